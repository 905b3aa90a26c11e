//! Writing into an image tree without ever leaving it. The image's own symlinks are absolute
//! (`var/run -> /run`, `usr/lib/ssl/certs -> /etc/ssl/certs`): followed naively from the build
//! host, a write through them lands on the host. Every path here is resolved by the kernel with
//! `openat2(RESOLVE_IN_ROOT)` relative to the tree's root directory, so symlinks resolve as they
//! would inside the booted image (absolute targets and `..` stay within the tree), and the final
//! component is created with `O_NOFOLLOW`/`O_EXCL` after removing what was there.
//!
//! Paths are relative, `/`-separated, without `.` or `..` components.

use crate::error::BuildError;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ImageRoot {
    fd: OwnedFd,
    path: PathBuf,
    /// The stage writing, named in its errors.
    stage: &'static str,
}

/// Where an open file descriptor points, as the kernel names it.
fn fd_path(fd: &OwnedFd) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl ImageRoot {
    pub fn open(path: &Path, stage: &'static str) -> Result<Self, BuildError> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| BuildError::io(path, e.into()))?;
        Ok(ImageRoot { fd, path: path.to_path_buf(), stage })
    }

    fn err(&self, rel: &str, e: impl Into<std::io::Error>) -> BuildError {
        BuildError::io(&self.path.join(rel), e.into())
    }

    fn check(&self, rel: &str) -> Result<(), BuildError> {
        let ok = !rel.is_empty()
            && !rel.starts_with('/')
            && !rel.contains('\0')
            && rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if ok {
            Ok(())
        } else {
            Err(BuildError::stage(self.stage, format!("{rel:?} is not a relative path inside the image")))
        }
    }

    /// A directory of the tree (`""` is the root), resolved inside the tree.
    fn open_dir(&self, rel: &str) -> std::io::Result<OwnedFd> {
        let path = if rel.is_empty() { "." } else { rel };
        Ok(rustix::fs::openat2(
            &self.fd,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve_flags(),
        )?)
    }

    /// The resolved parent directory of `rel` (created if missing) and the final name.
    fn parent(&self, rel: &str) -> Result<(OwnedFd, String), BuildError> {
        self.check(rel)?;
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if !parent.is_empty() {
            self.create_dir_all(parent, 0o755)?;
        }
        let fd = self.open_dir(parent).map_err(|e| self.err(parent, e))?;
        Ok((fd, name.to_string()))
    }

    /// Create `rel` and its missing parents with `mode`; existing directories keep theirs.
    pub fn create_dir_all(&self, rel: &str, mode: u32) -> Result<(), BuildError> {
        self.check(rel)?;
        let mut prefix = String::new();
        for component in rel.split('/') {
            let parent = prefix.clone();
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            match self.open_dir(&prefix) {
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(&prefix, e)),
            }
            let parent_fd = self.open_dir(&parent).map_err(|e| self.err(&parent, e))?;
            if let Ok(stat) = rustix::fs::statat(&parent_fd, component, AtFlags::SYMLINK_NOFOLLOW)
                && rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Symlink
            {
                return Err(BuildError::stage(
                    self.stage,
                    format!(
                        "{prefix} is a symlink whose target is not a directory inside the image; refusing to write under it"
                    ),
                ));
            }
            rustix::fs::mkdirat(&parent_fd, component, Mode::from_raw_mode(mode))
                .map_err(|e| self.err(&prefix, e))?;
            rustix::fs::chmodat(&parent_fd, component, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|e| self.err(&prefix, e))?;
        }
        Ok(())
    }

    /// Remove whatever is at `rel` if it is not a directory (a symlink is removed, not followed).
    fn unlink_existing(&self, dir: &OwnedFd, name: &str, rel: &str) -> Result<(), BuildError> {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Write a regular file owned by root with `mode`, replacing a file or symlink at `rel`.
    pub fn write(&self, rel: &str, contents: &[u8], mode: u32) -> Result<(), BuildError> {
        let (dir, name) = self.parent(rel)?;
        self.unlink_existing(&dir, &name, rel)?;
        let fd = rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| self.err(rel, e))?;
        rustix::fs::fchown(&fd, Some(rustix::fs::Uid::ROOT), Some(rustix::fs::Gid::ROOT))
            .map_err(|e| self.err(rel, e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| self.err(rel, e))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(contents).map_err(|e| self.err(rel, e))
    }

    /// Copy a host file (read as given) into the tree at `rel`.
    pub fn copy_from(&self, host: &Path, rel: &str, mode: u32) -> Result<(), BuildError> {
        let bytes = std::fs::read(host).map_err(|e| BuildError::io(host, e))?;
        self.write(rel, &bytes, mode)
    }

    /// A symlink at `rel` (owned by root), replacing a file or symlink there.
    pub fn symlink(&self, rel: &str, target: &str) -> Result<(), BuildError> {
        let (dir, name) = self.parent(rel)?;
        self.unlink_existing(&dir, &name, rel)?;
        rustix::fs::symlinkat(target, &dir, name.as_str()).map_err(|e| self.err(rel, e))?;
        rustix::fs::chownat(
            &dir,
            name.as_str(),
            Some(rustix::fs::Uid::ROOT),
            Some(rustix::fs::Gid::ROOT),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err(rel, e))
    }

    /// `rel` as the booted system names it: its longest existing directory prefix resolved inside
    /// the tree (symlinks such as `bin -> usr/bin` followed), the rest as given. For checks by
    /// name, which an alias must not get around.
    pub fn resolved(&self, rel: &str) -> Result<String, BuildError> {
        self.check(rel)?;
        let components: Vec<&str> = rel.split('/').collect();
        let root = fd_path(&self.fd).map_err(|e| self.err("", e))?;
        for split in (0..components.len()).rev() {
            let prefix = components[..split].join("/");
            let Ok(dir) = self.open_dir(&prefix) else { continue };
            let at = fd_path(&dir).map_err(|e| self.err(&prefix, e))?;
            let inside = at.strip_prefix(&root).map_err(|_| {
                BuildError::stage(
                    self.stage,
                    format!("{prefix} resolved to {}, outside the tree", at.display()),
                )
            })?;
            let mut names: Vec<String> =
                inside.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            names.extend(components[split..].iter().map(|c| c.to_string()));
            return Ok(names.join("/"));
        }
        Err(self.err("", std::io::Error::from(std::io::ErrorKind::NotFound)))
    }

    /// What is at `rel` (resolving its parents inside the tree, not its final component).
    pub fn file_type(&self, rel: &str) -> Result<Option<rustix::fs::FileType>, BuildError> {
        self.check(rel)?;
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let dir = match self.open_dir(parent) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(parent, e)),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(rustix::fs::FileType::from_raw_mode(stat.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// The names in directory `rel` (resolved inside the tree), sorted by bytes.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, BuildError> {
        let dir = if rel.is_empty() {
            self.open_dir("")
        } else {
            self.check(rel)?;
            self.open_dir(rel)
        }
        .map_err(|e| self.err(rel, e))?;
        let readable = rustix::fs::openat(
            &dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(rel, e))?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&readable).map_err(|e| self.err(rel, e))? {
            let entry = entry.map_err(|e| self.err(rel, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Remove `rel` and, for a directory, everything under it; never follows a symlink.
    /// Returns whether anything was there.
    pub fn remove_all(&self, rel: &str) -> Result<bool, BuildError> {
        let Some(kind) = self.file_type(rel)? else { return Ok(false) };
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let dir = self.open_dir(parent).map_err(|e| self.err(parent, e))?;
        if kind == rustix::fs::FileType::Directory {
            for child in self.list(rel)? {
                self.remove_all(&format!("{rel}/{child}"))?;
            }
            rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR).map_err(|e| self.err(rel, e))?;
        } else {
            rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| self.err(rel, e))?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image tree whose `var/run` points at `/run`, `escape` at `../../outside` (a directory
    /// beside the tree) and `up` at `../..`.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("up")).unwrap();
        (dir, root)
    }

    #[test]
    fn writes_through_absolute_and_dotdot_symlinks_stay_in_the_tree() {
        let (dir, root) = tree();
        let image = ImageRoot::open(&root, "customize").unwrap();
        image.write("var/run/ceremony.pid", b"1\n", 0o644).unwrap();
        assert_eq!(std::fs::read(root.join("run/ceremony.pid")).unwrap(), b"1\n", "resolved as in the image");
        image.write("up/file", b"x", 0o644).unwrap();
        assert!(root.join("file").exists(), "`..` at the root stays at the root, as in a chroot");
        assert!(!dir.path().join("file").exists());
        // `escape` resolves to /outside inside the tree, which does not exist: refused, and the
        // directory beside the tree is untouched.
        let err = image.write("escape/file", b"x", 0o644).unwrap_err().to_string();
        assert!(err.contains("escape is a symlink"), "{err}");
        assert!(image.create_dir_all("escape/deep/er", 0o755).is_err());
        assert_eq!(std::fs::read_dir(dir.path().join("outside")).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_at_the_final_component_is_replaced_not_followed() {
        let (dir, root) = tree();
        std::fs::write(dir.path().join("outside/victim"), b"host file").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside/victim"), root.join("link")).unwrap();
        let image = ImageRoot::open(&root, "customize").unwrap();
        image.write("link", b"image file", 0o600).unwrap();
        assert_eq!(std::fs::read(dir.path().join("outside/victim")).unwrap(), b"host file");
        assert_eq!(std::fs::read(root.join("link")).unwrap(), b"image file");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(root.join("link")).unwrap().permissions().mode() & 0o7777, 0o600);
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let (dir, root) = tree();
        std::fs::write(dir.path().join("outside/keep"), b"x").unwrap();
        std::fs::create_dir_all(root.join("usr/share/doc/pkg")).unwrap();
        std::fs::write(root.join("usr/share/doc/pkg/changelog"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("usr/share/doc/link")).unwrap();
        let image = ImageRoot::open(&root, "customize").unwrap();
        assert!(image.remove_all("usr/share/doc").unwrap());
        assert!(!root.join("usr/share/doc").exists());
        assert!(dir.path().join("outside/keep").exists());
        assert!(!image.remove_all("usr/share/doc").unwrap());
    }

    #[test]
    fn refuses_paths_that_are_not_relative_and_clean() {
        let (_dir, root) = tree();
        let image = ImageRoot::open(&root, "customize").unwrap();
        for bad in ["/etc/passwd", "../x", "a/../b", "", "a//b"] {
            assert!(image.write(bad, b"", 0o644).is_err(), "{bad:?}");
        }
    }
}
