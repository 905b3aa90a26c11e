//! Is a burn target in use? A device is refused when it, or a partition of the same disk, is
//! mounted, used as swap, or held by device-mapper/LVM whose volume is mounted; the disk the
//! running system is mounted from is always refused. A regular file is checked through the loop
//! devices backed by it. The answer names what is mounted where, from `/proc/self/mountinfo`,
//! `/proc/swaps` and sysfs (`/sys/dev/block/MAJ:MIN`, `partition`, `slaves`).

use crate::MediaError;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One way the target's disk is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// Human description: `/dev/sda1 is mounted at /home (rw)`.
    pub what: String,
    /// The disk holds the mount of `/`: never written, whatever the operator says.
    pub system: bool,
}

/// `MAJ:MIN` of a device number.
fn maj_min(rdev: u64) -> String {
    format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// The whole-disk sysfs directory for a block device `MAJ:MIN` (a partition's parent).
fn whole_disk(maj_min: &str) -> Option<PathBuf> {
    let dev = std::fs::canonicalize(format!("/sys/dev/block/{maj_min}")).ok()?;
    if dev.join("partition").exists() { dev.parent().map(Path::to_path_buf) } else { Some(dev) }
}

/// The whole disks a block device sits on: itself, or what a device-mapper device is made of.
fn underlying_disks(maj_min: &str) -> Vec<PathBuf> {
    let Some(disk) = whole_disk(maj_min) else { return Vec::new() };
    let slaves = disk.join("slaves");
    let mut out = vec![disk.clone()];
    if let Ok(entries) = std::fs::read_dir(&slaves) {
        for entry in entries.flatten() {
            if let Ok(dev) = std::fs::read_to_string(entry.path().join("dev")) {
                out.extend(underlying_disks(dev.trim()));
            }
        }
    }
    out
}

/// The loop devices backed by `file`, as `MAJ:MIN`.
fn loops_backed_by(file: &Path) -> Vec<(String, String)> {
    let Ok(target) = std::fs::canonicalize(file) else { return Vec::new() };
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return out };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).unwrap_or_default();
        if Path::new(backing.trim()) == target
            && let Ok(dev) = std::fs::read_to_string(entry.path().join("dev"))
        {
            out.push((format!("/dev/{name}"), dev.trim().to_string()));
        }
    }
    out
}

/// Unescape the octal escapes of mountinfo fields (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every way the target (a block device or an image file) is in use.
pub fn uses(target: &Path) -> Result<Vec<Use>, MediaError> {
    let meta = std::fs::metadata(target).map_err(|e| MediaError::io(target, e))?;
    let devices: Vec<(String, String)> = if meta.file_type().is_block_device() {
        vec![(target.display().to_string(), maj_min(meta.rdev()))]
    } else {
        loops_backed_by(target)
    };
    let disks: Vec<PathBuf> = devices.iter().flat_map(|(_, mm)| whole_disk(mm)).collect();
    if disks.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(separator) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mm), Some(mount_point), Some(options)) = (fields.get(2), fields.get(4), fields.get(5))
        else {
            continue;
        };
        let source = fields.get(separator + 2).map(|s| unescape(s)).unwrap_or_default();
        let on_target = underlying_disks(mm).iter().any(|d| disks.contains(d));
        if on_target {
            let mount_point = unescape(mount_point);
            let mode = if options.split(',').any(|o| o == "ro") { "ro" } else { "rw" };
            found.push(Use {
                what: format!("{source} is mounted at {mount_point} ({mode})"),
                system: mount_point == "/",
            });
        }
    }
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    for line in swaps.lines().skip(1) {
        let Some(device) = line.split_whitespace().next() else { continue };
        if let Ok(m) = std::fs::metadata(device)
            && m.file_type().is_block_device()
            && underlying_disks(&maj_min(m.rdev())).iter().any(|d| disks.contains(d))
        {
            found.push(Use { what: format!("{device} is in use as swap"), system: false });
        }
    }
    if !meta.file_type().is_block_device() {
        for (loop_dev, _) in &devices {
            found.iter_mut().for_each(|u| {
                u.what = format!("{} (through {loop_dev}, backed by {})", u.what, target.display())
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/media/My\\040Stick"), "/media/My Stick");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn the_root_file_system_disk_is_a_system_use() {
        // This machine class boots from a virtual disk (/dev/vda): the test needs a root file
        // system on a block device.
        let root = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = root.lines().find(|l| l.split(' ').nth(4) == Some("/")).unwrap();
        let mm = line.split(' ').nth(2).unwrap();
        let disk = whole_disk(mm).expect("the root file system is on a block device");
        let name = disk.file_name().unwrap().to_string_lossy().into_owned();
        let device = PathBuf::from(format!("/dev/{name}"));
        let uses = uses(&device).unwrap();
        assert!(uses.iter().any(|u| u.system), "{uses:?}");
    }
}
