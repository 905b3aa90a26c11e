//! The image definition's overlay: files copied over the customized tree by the `normalize`
//! stage, after the initrd is built and the air gap is made. So the overlay adds files and
//! never takes anything away: a path the tree already holds (a package's file, a masked unit,
//! the image's identity) is refused, and so are the paths that would undo what `customize` did
//! (kernel modules, timers, the programs it removed, the initrd's configuration, the `ceremony`
//! tool's place). Every write goes through [`ImageRoot`].

use crate::error::BuildError;
use crate::image_root::ImageRoot;
use std::path::Path;

/// The stage that applies the overlay, named in its errors.
const STAGE: &str = "normalize";

/// Copy the overlay snapshot `from` over the tree; a refused path fails the stage (whose work
/// directory is then discarded, as for any failure).
pub(crate) fn apply(image: &ImageRoot, from: &Path) -> Result<(), BuildError> {
    copy_overlay(image, from, "")
}

/// Why the overlay may not hold `rel` (checked before it is written), if it may not. The rules
/// apply to the path as the image resolves it (`bin/x` is `usr/bin/x` there).
fn refusal(image: &ImageRoot, rel: &str, is_dir: bool) -> Result<Option<&'static str>, BuildError> {
    let rel = image.resolved(rel)?;
    let rel = rel.as_str();
    let under = |dir: &str| rel == dir || rel.starts_with(&format!("{dir}/"));
    let why = if under("dev") {
        Some("the live system mounts devtmpfs on /dev; the image tree holds nothing there")
    } else if ["lib/modules", "usr/lib/modules"].iter().any(|d| under(d)) {
        Some("kernel modules come from the locked packages, pruned by the definition's [kernel]")
    } else if ["etc/initramfs-tools", "usr/share/initramfs-tools"].iter().any(|d| under(d)) {
        Some("the initrd is built before the overlay is applied; it would never see this file")
    } else if rel.ends_with(".timer") {
        Some("the image masks every timer; one added here would run")
    } else if crate::stages::customize::REMOVED_PROGRAMS.contains(&rel) {
        Some("the image build removes this program (the air gap)")
    } else if rel == "usr/local/bin/ceremony" {
        Some("the build installs the ceremony tool here")
    } else if !is_dir && image.file_type(rel)?.is_some() {
        Some("the image already holds this path; the overlay adds files, it does not replace them")
    } else {
        None
    };
    Ok(why)
}

/// Copy the overlay snapshot over the root: directories 0755 (existing ones keep their mode),
/// files 0644 or 0755 as the snapshot says, symlinks as they are, everything owned by root.
fn copy_overlay(image: &ImageRoot, from: &Path, prefix: &str) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    for entry in crate::cache::read_dir_sorted(from)? {
        let name = entry.file_name().expect("entries have names").to_str().ok_or_else(|| {
            BuildError::stage(STAGE, format!("overlay file name {} is not UTF-8", entry.display()))
        })?;
        let rel = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        let meta = std::fs::symlink_metadata(&entry).map_err(|e| BuildError::io(&entry, e))?;
        if let Some(why) = refusal(image, &rel, meta.is_dir())? {
            let resolved = image.resolved(&rel)?;
            let seen = if resolved == rel { String::new() } else { format!(" (/{resolved} in the image)") };
            return Err(BuildError::stage(STAGE, format!("overlay file {rel}{seen}: {why}")));
        }
        if meta.is_dir() {
            image.create_dir_all(&rel, 0o755)?;
            copy_overlay(image, &entry, &rel)?;
        } else if meta.is_symlink() {
            let target = std::fs::read_link(&entry).map_err(|e| BuildError::io(&entry, e))?;
            image.symlink(&rel, &target.to_string_lossy())?;
        } else {
            image.copy_from(&entry, &rel, meta.permissions().mode() & 0o777)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_files_under_absolute_image_symlinks_stay_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        let host_target = dir.path().join("host-run");
        std::os::unix::fs::symlink(&host_target, root.join("var/run")).unwrap();
        let overlay = dir.path().join("overlay");
        std::fs::create_dir_all(overlay.join("var/run")).unwrap();
        std::fs::write(overlay.join("var/run/marker"), b"x").unwrap();
        // The image's var/run points at a directory that exists on the host but not in the image.
        std::fs::create_dir_all(&host_target).unwrap();
        let err = apply(&ImageRoot::open(&root, STAGE).unwrap(), &overlay).unwrap_err().to_string();
        assert!(err.contains("var/run is a symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&host_target).unwrap().count(), 0, "nothing written on the host");
        // Once the target exists inside the image, the file lands there, as in the booted system.
        std::fs::create_dir_all(root.join(host_target.strip_prefix("/").unwrap())).unwrap();
        apply(&ImageRoot::open(&root, STAGE).unwrap(), &overlay).unwrap();
        assert!(root.join(host_target.strip_prefix("/").unwrap()).join("marker").exists());
        assert_eq!(std::fs::read_dir(&host_target).unwrap().count(), 0, "nothing written on the host");
    }

    #[test]
    fn the_overlay_adds_files_and_refuses_what_would_undo_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["etc/systemd/system", "usr/local/bin", "usr/lib", "usr/bin", "dev"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", root.join("bin")).unwrap();
        std::fs::write(root.join("etc/hostname"), b"ceremony\n").unwrap();
        std::os::unix::fs::symlink("/dev/null", root.join("etc/systemd/system/systemd-networkd.service"))
            .unwrap();
        let image = ImageRoot::open(&root, STAGE).unwrap();
        let attempt = |rel: &str| {
            let overlay = dir.path().join(format!("overlay-{}", rel.replace('/', "_")));
            let file = overlay.join(rel);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, b"x").unwrap();
            apply(&image, &overlay).map_err(|e| e.to_string())
        };
        for (rel, why) in [
            ("etc/hostname", "already holds this path"),
            ("etc/systemd/system/systemd-networkd.service", "already holds this path"),
            ("lib/modules/6.1.0/kernel/net/x.ko", "kernel modules"),
            ("usr/lib/modules/6.1.0/x.ko", "kernel modules"),
            ("etc/systemd/system/poll.timer", "masks every timer"),
            ("usr/bin/networkctl", "removes this program"),
            ("bin/networkctl", "/usr/bin/networkctl in the image"),
            ("lib/systemd/systemd-networkd", "removes this program"),
            ("etc/initramfs-tools/modules", "initrd"),
            ("usr/local/bin/ceremony", "ceremony tool"),
            ("dev/sda", "devtmpfs"),
        ] {
            let err = attempt(rel).unwrap_err();
            // Named at the first refused path: the file, or the directory holding it.
            let named =
                err.split("overlay file ").nth(1).and_then(|r| r.split([':', ' ']).next()).unwrap_or("");
            assert!(!named.is_empty() && rel.starts_with(named) && err.contains(why), "{rel}: {err}");
        }
        assert_eq!(std::fs::read(root.join("etc/hostname")).unwrap(), b"ceremony\n");
        assert!(std::fs::read_link(root.join("etc/systemd/system/systemd-networkd.service")).is_ok());
        assert!(!root.join("usr/lib/modules").exists() && !root.join("usr/local/bin/ceremony").exists());
        // New files, into directories the tree has or not, are added.
        attempt("etc/ceremony/README").unwrap();
        attempt("etc/systemd/system/ceremony-check.service").unwrap();
        assert_eq!(std::fs::read(root.join("etc/ceremony/README")).unwrap(), b"x");
    }
}
