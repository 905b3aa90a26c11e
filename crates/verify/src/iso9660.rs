//! The ISO 9660 primary volume descriptor (ECMA-119 8.4), enough to recognise an ISO, notice a
//! truncated one and compare the volume-level fields (ids and the four volume dates). Parsing
//! takes bytes; [`read_pvd`] does the I/O.

use crate::VerifyError;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const SECTOR: u64 = 2048;
const PVD_OFFSET: u64 = 16 * SECTOR;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryVolume {
    pub system_id: String,
    pub volume_id: String,
    /// Volume space size in bytes (blocks x logical block size).
    pub volume_bytes: u64,
    pub volume_set_id: String,
    pub publisher_id: String,
    pub preparer_id: String,
    pub application_id: String,
    pub creation_date: String,
    pub modification_date: String,
    pub expiration_date: String,
    pub effective_date: String,
}

impl PrimaryVolume {
    /// The fields by name, in descriptor order, for comparison and display.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("system id", self.system_id.clone()),
            ("volume id", self.volume_id.clone()),
            ("volume size", self.volume_bytes.to_string()),
            ("volume set id", self.volume_set_id.clone()),
            ("publisher id", self.publisher_id.clone()),
            ("preparer id", self.preparer_id.clone()),
            ("application id", self.application_id.clone()),
            ("creation date", self.creation_date.clone()),
            ("modification date", self.modification_date.clone()),
            ("expiration date", self.expiration_date.clone()),
            ("effective date", self.effective_date.clone()),
        ]
    }
}

/// Parse the 2048-byte primary volume descriptor.
pub fn parse_pvd(sector: &[u8]) -> Result<PrimaryVolume, String> {
    if sector.len() < 2048 {
        return Err(format!("the volume descriptor is {} bytes, not 2048", sector.len()));
    }
    if sector[0] != 1 || &sector[1..6] != b"CD001" {
        return Err("no ISO 9660 primary volume descriptor at sector 16 (this is not an ISO image)".into());
    }
    let text = |range: std::ops::Range<usize>| String::from_utf8_lossy(&sector[range]).trim_end().to_string();
    let blocks = u32::from_le_bytes(sector[80..84].try_into().expect("4 bytes")) as u64;
    let block_size = u16::from_le_bytes(sector[128..130].try_into().expect("2 bytes")) as u64;
    Ok(PrimaryVolume {
        system_id: text(8..40),
        volume_id: text(40..72),
        volume_bytes: blocks * block_size,
        volume_set_id: text(190..318),
        publisher_id: text(318..446),
        preparer_id: text(446..574),
        application_id: text(574..702),
        creation_date: date(&sector[813..830]),
        modification_date: date(&sector[830..847]),
        expiration_date: date(&sector[847..864]),
        effective_date: date(&sector[864..881]),
    })
}

/// ECMA-119 8.4.26.1: `YYYYMMDDHHMMSScc` digits and an offset in 15-minute units.
fn date(bytes: &[u8]) -> String {
    let digits = &bytes[..16];
    if digits.iter().all(|b| *b == b'0') {
        return "(not set)".into();
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        // Not a date: shown as the bytes it is, escaped (a crafted image's text).
        return format!("(not a date: {:?})", String::from_utf8_lossy(digits));
    }
    let digits = std::str::from_utf8(digits).expect("ASCII digits");
    let offset_minutes = (bytes[16] as i8) as i32 * 15;
    format!(
        "{}-{}-{}T{}:{}:{}.{} {:+03}:{:02}",
        &digits[0..4],
        &digits[4..6],
        &digits[6..8],
        &digits[8..10],
        &digits[10..12],
        &digits[12..14],
        &digits[14..16],
        offset_minutes / 60,
        (offset_minutes % 60).abs()
    )
}

/// Read and check an ISO file: it must exist, hold a primary volume descriptor and be as long as
/// the volume says.
pub fn read_pvd(path: &Path) -> Result<PrimaryVolume, VerifyError> {
    let mut file = std::fs::File::open(path).map_err(|e| VerifyError::io(path, e))?;
    let length = file.metadata().map_err(|e| VerifyError::io(path, e))?.len();
    let not_iso = |message: String| VerifyError::NotAnIso { path: path.to_path_buf(), message };
    if length < PVD_OFFSET + SECTOR {
        return Err(not_iso(format!("{length} bytes: too short to be an ISO image")));
    }
    let mut sector = vec![0u8; SECTOR as usize];
    file.seek(SeekFrom::Start(PVD_OFFSET))
        .and_then(|_| file.read_exact(&mut sector))
        .map_err(|e| VerifyError::io(path, e))?;
    let pvd = parse_pvd(&sector).map_err(not_iso)?;
    if length < pvd.volume_bytes {
        return Err(not_iso(format!(
            "truncated: the volume descriptor says {} bytes, the file has {length}",
            pvd.volume_bytes
        )));
    }
    Ok(pvd)
}

/// Does the image carry a Joliet tree (a supplementary volume descriptor with a UCS-2 escape
/// sequence, ECMA-119 8.5 and the Joliet specification)?
pub fn has_joliet(path: &Path) -> Result<bool, VerifyError> {
    let mut file = std::fs::File::open(path).map_err(|e| VerifyError::io(path, e))?;
    let mut sector = vec![0u8; SECTOR as usize];
    for index in 16..64 {
        file.seek(SeekFrom::Start(index * SECTOR)).map_err(|e| VerifyError::io(path, e))?;
        if file.read_exact(&mut sector).is_err() || &sector[1..6] != b"CD001" {
            return Ok(false);
        }
        match sector[0] {
            2 if matches!(&sector[88..91], b"%/@" | b"%/C" | b"%/E") => return Ok(true),
            255 => return Ok(false),
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut s = vec![b' '; 2048];
        s[0] = 1;
        s[1..6].copy_from_slice(b"CD001");
        s[6] = 1;
        s[40..47].copy_from_slice(b"VOLUME1");
        s[80..84].copy_from_slice(&100u32.to_le_bytes());
        s[128..130].copy_from_slice(&2048u16.to_le_bytes());
        s[813..829].copy_from_slice(b"2026071200000000");
        s[829] = 0;
        s[830..846].copy_from_slice(b"2026071200000000");
        s[846] = 4; // +01:00
        s[847..864].fill(b'0');
        s[864..881].fill(b'0');
        s[863] = 0;
        s[880] = 0;
        s
    }

    /// A date field of anything but digits (a fuzzer found a multi-byte character there, which
    /// panicked when sliced) is shown for what it is.
    #[test]
    fn a_date_that_is_not_digits_is_said_not_sliced() {
        let mut field = *b"2026071200000000\0";
        assert_eq!(date(&field), "2026-07-12T00:00:00.00 +00:00");
        field[8..11].copy_from_slice("\u{20ac}".as_bytes());
        assert!(date(&field).starts_with("(not a date: "), "{}", date(&field));
        field[9] = 0xff;
        assert!(date(&field).starts_with("(not a date: "), "{}", date(&field));
    }

    #[test]
    fn parses_ids_size_and_dates() {
        let pvd = parse_pvd(&sample()).unwrap();
        assert_eq!(pvd.volume_id, "VOLUME1");
        assert_eq!(pvd.volume_bytes, 204_800);
        assert_eq!(pvd.creation_date, "2026-07-12T00:00:00.00 +00:00");
        assert_eq!(pvd.modification_date, "2026-07-12T00:00:00.00 +01:00");
        assert_eq!(pvd.expiration_date, "(not set)");
    }

    #[test]
    fn rejects_what_is_not_a_volume_descriptor() {
        let mut s = sample();
        s[1] = b'X';
        assert!(parse_pvd(&s).unwrap_err().contains("not an ISO image"));
        assert!(parse_pvd(&s[..100]).is_err());
    }

    #[test]
    fn read_pvd_notices_truncation_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.iso");
        let mut bytes = vec![0u8; 16 * 2048];
        bytes.extend(sample());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_pvd(&path).unwrap_err().to_string();
        assert!(
            err.contains("truncated: the volume descriptor says 204800 bytes, the file has 34816"),
            "{err}"
        );
        bytes.resize(204_800, 0);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_pvd(&path).unwrap().volume_id, "VOLUME1");
        assert!(!has_joliet(&path).unwrap(), "a primary descriptor alone is no Joliet tree");
        std::fs::write(&path, b"hello").unwrap();
        assert!(read_pvd(&path).unwrap_err().to_string().contains("too short"));
        assert!(matches!(read_pvd(&dir.path().join("missing.iso")), Err(VerifyError::Io { .. })));
    }
}
