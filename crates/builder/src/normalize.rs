//! Removing the known non-determinism of a Debian root file system (see DESIGN.md section 4),
//! then clamping every mtime to SOURCE_DATE_EPOCH. Applied at the end of every stage that
//! produces a root tree, so that each stage's digest is reproducible on its own.

use crate::error::BuildError;
use std::path::Path;

/// Files removed outright: caches and state that are regenerated at boot or never needed.
const REMOVE_FILES: &[&str] = &[
    "var/lib/dbus/machine-id",
    "var/cache/ldconfig/aux-cache",
    "var/lib/systemd/catalog/database",
    "var/lib/systemd/random-seed",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "var/lib/dpkg/available-old",
    "etc/ssl/private/ssl-cert-snakeoil.key",
    "etc/ssl/certs/ssl-cert-snakeoil.pem",
    "var/cache/man/index.db",
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/subuid-",
    "etc/subgid-",
];

/// Directories whose contents are removed (the directories stay).
const EMPTY_DIRS: &[&str] = &[
    "var/log",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/fontconfig",
    "var/cache/man",
    "var/tmp",
    "tmp",
    "run",
];

/// File name patterns removed anywhere in the tree.
fn removed_anywhere(name: &str) -> bool {
    name.ends_with(".pyc") || name.starts_with("ssh_host_") || name == "icon-theme.cache"
}

/// Normalize the Debian tree at `root` in place.
pub fn normalize_debian_tree(root: &Path, source_date_epoch: i64) -> Result<(), BuildError> {
    for relative in REMOVE_FILES {
        remove_if_present(&root.join(relative))?;
    }
    for relative in EMPTY_DIRS {
        let dir = root.join(relative);
        if dir.is_dir() {
            for entry in crate::cache::read_dir_sorted(&dir)? {
                crate::cache::remove_path(&entry)?;
            }
        }
    }
    remove_matching(root, root)?;
    // Present but empty, as systemd expects for a system that generates its id at boot.
    let machine_id = root.join("etc/machine-id");
    if root.join("etc").is_dir() {
        std::fs::write(&machine_id, b"").map_err(|e| BuildError::io(&machine_id, e))?;
    }
    fix_shadow_dates(root, source_date_epoch)?;
    ceremony_os_tree::clamp_mtimes(root, source_date_epoch)?;
    Ok(())
}

/// Field 3 of /etc/shadow (day of the last password change) comes from the clock when a user is
/// created; pin it to SOURCE_DATE_EPOCH's day.
fn fix_shadow_dates(root: &Path, source_date_epoch: i64) -> Result<(), BuildError> {
    let path = root.join("etc/shadow");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let day = (source_date_epoch / 86_400).to_string();
    let fixed: String = text
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 2 && !fields[2].is_empty() {
                fields[2] = &day;
            }
            format!("{}\n", fields.join(":"))
        })
        .collect();
    if fixed != text {
        std::fs::write(&path, fixed).map_err(|e| BuildError::io(&path, e))?;
    }
    Ok(())
}

fn remove_matching(root: &Path, dir: &Path) -> Result<(), BuildError> {
    for entry in crate::cache::read_dir_sorted(dir)? {
        let meta = std::fs::symlink_metadata(&entry).map_err(|e| BuildError::io(&entry, e))?;
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if meta.is_dir() {
            if name == "proc" && dir == root {
                continue;
            }
            remove_matching(root, &entry)?;
        } else if removed_anywhere(&name) {
            crate::cache::remove_path(&entry)?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), BuildError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => crate::cache::remove_path(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BuildError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn known_nondeterminism_is_removed_and_times_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["etc", "var/log/apt", "var/cache/ldconfig", "usr/lib/python3/x", "var/lib/dbus"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("etc/machine-id"), b"0123456789abcdef\n").unwrap();
        std::fs::write(root.join("var/lib/dbus/machine-id"), b"x").unwrap();
        std::fs::write(root.join("var/log/apt/history.log"), b"Start-Date: today").unwrap();
        std::fs::write(root.join("var/log/dpkg.log"), b"today").unwrap();
        std::fs::write(root.join("var/cache/ldconfig/aux-cache"), b"x").unwrap();
        std::fs::write(root.join("usr/lib/python3/x/m.cpython-311.pyc"), b"x").unwrap();
        std::fs::write(root.join("etc/shadow"), "root:*:20000:0:99999:7:::\nsys:*:19999:0:99999:7:::\n")
            .unwrap();
        std::fs::write(root.join("etc/keep"), b"keep").unwrap();

        normalize_debian_tree(root, 1_783_814_400).unwrap();

        assert_eq!(std::fs::read(root.join("etc/machine-id")).unwrap(), b"");
        assert!(!root.join("var/lib/dbus/machine-id").exists());
        assert!(
            root.join("var/log").is_dir()
                && std::fs::read_dir(root.join("var/log")).unwrap().next().is_none()
        );
        assert!(!root.join("var/cache/ldconfig/aux-cache").exists());
        assert!(!root.join("usr/lib/python3/x/m.cpython-311.pyc").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/shadow")).unwrap(),
            "root:*:20646:0:99999:7:::\nsys:*:20646:0:99999:7:::\n"
        );
        assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"keep");
        assert_eq!(std::fs::metadata(root.join("etc/keep")).unwrap().mtime(), 1_783_814_400);
    }
}
