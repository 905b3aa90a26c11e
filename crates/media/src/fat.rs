//! FAT images written directly so that every byte is a function of the inputs: the volume serial
//! and every directory entry's date come from one given time, files are added in sorted order.
//! The build uses it for the EFI system partition image, the ceremony tool for the export stick.
//! (mtools stamps directories it creates with the current time, whatever SOURCE_DATE_EPOCH says.)

use crate::MediaError;
use std::io::Write;
use std::path::Path;

#[derive(Debug)]
struct FixedTime(fatfs::DateTime);

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// A FAT image holding `files` (FAT path such as `EFI/BOOT/BOOTX64.EFI`, and the bytes), stamped
/// with `epoch` (Unix seconds), sized to fit with at least 256 KiB to spare, rounded up to 1 MiB.
pub fn fat_image<B: AsRef<[u8]>>(
    label: &str,
    files: &[(&str, B)],
    epoch: i64,
) -> Result<Vec<u8>, MediaError> {
    let io = |e: std::io::Error| MediaError::io(Path::new("(FAT image in memory)"), e);
    let payload: u64 = files.iter().map(|(_, b)| b.as_ref().len() as u64).sum();
    let size = (payload + 256 * 1024).div_ceil(1 << 20).max(2) << 20;
    let mut disk = std::io::Cursor::new(vec![0u8; size as usize]);

    let mut label_bytes = [b' '; 11];
    for (slot, b) in label_bytes.iter_mut().zip(label.to_ascii_uppercase().bytes()) {
        *slot = b;
    }
    let volume_id = (epoch as u64 & 0xffff_ffff) as u32;
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new().volume_id(volume_id).volume_label(label_bytes),
    )
    .map_err(io)?;

    let time: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_date_time(epoch))));
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new().time_provider(time)).map_err(io)?;
    let mut sorted: Vec<&(&str, B)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (fat_path, bytes) in sorted {
        let (dirs, name) = fat_path.rsplit_once('/').unwrap_or(("", fat_path));
        let mut dir = fs.root_dir();
        for part in dirs.split('/').filter(|p| !p.is_empty()) {
            dir = match dir.open_dir(part) {
                Ok(d) => d,
                Err(_) => dir.create_dir(part).map_err(io)?,
            };
        }
        let mut f = dir.create_file(name).map_err(io)?;
        f.truncate().map_err(io)?;
        f.write_all(bytes.as_ref()).map_err(io)?;
        f.flush().map_err(io)?;
    }
    fs.unmount().map_err(io)?;
    Ok(disk.into_inner())
}

/// [`fat_image`] written to `path`, a new file.
pub fn write_fat_image<B: AsRef<[u8]>>(
    path: &Path,
    label: &str,
    files: &[(&str, B)],
    epoch: i64,
) -> Result<(), MediaError> {
    crate::write_new(path, &fat_image(label, files, epoch)?)
}

fn fat_date_time(epoch: i64) -> fatfs::DateTime {
    let (y, mo, d, h, mi, s) = ceremony_os_timestamp::Timestamp::from_unix(epoch).civil();
    fatfs::DateTime {
        date: fatfs::Date { year: y as u16, month: mo as u16, day: d as u16 },
        time: fatfs::Time { hour: h as u16, min: mi as u16, sec: (s - s % 2) as u16, millis: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_bytes_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![("EFI/BOOT/BOOTX64.EFI", vec![7u8; 300_000]), ("EFI/BOOT/grub.cfg", b"x".to_vec())];
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        write_fat_image(&a, "efiboot", &files, 1_783_814_400).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write_fat_image(&b, "efiboot", &files, 1_783_814_400).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(std::fs::metadata(&a).unwrap().len(), 2 << 20);

        let file = std::fs::File::open(&a).unwrap();
        let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_id(), 1_783_814_400);
        assert_eq!(fs.volume_label().trim(), "EFIBOOT");
        let entry = fs
            .root_dir()
            .open_dir("EFI/BOOT")
            .unwrap()
            .iter()
            .map(|e| e.unwrap())
            .find(|e| e.file_name() == "BOOTX64.EFI")
            .unwrap();
        assert_eq!(entry.len(), 300_000);
        let modified = entry.modified();
        assert_eq!((modified.date.year, modified.date.month, modified.date.day), (2026, 7, 12));
    }
}
