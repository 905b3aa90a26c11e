//! UTC timestamps in the one form the image definition accepts (`2026-07-12T00:00:00Z`), their
//! Unix time (the image's SOURCE_DATE_EPOCH) and snapshot.debian.org's `20260712T000000Z` form.
//!
//! Hand-written so that no clock or time-zone database is ever consulted.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix: i64,
}

impl Timestamp {
    pub fn from_unix(unix: i64) -> Self {
        Timestamp { unix }
    }

    /// Parse `YYYY-MM-DDTHH:MM:SSZ` exactly (UTC only, no fractions, no offsets).
    pub fn parse_rfc3339_utc(text: &str) -> Result<Self, String> {
        let expected = || format!("expected a UTC timestamp like 2026-07-12T00:00:00Z, got {text:?}");
        let b = text.as_bytes();
        if b.len() != 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'Z'
        {
            return Err(expected());
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
            let part = &text[range];
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(expected());
            }
            part.parse::<i64>().map_err(|_| expected())
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(format!("{text:?} is not a valid date and time"));
        }
        if year < 1980 {
            // FAT (the EFI boot image) cannot hold earlier dates.
            return Err(format!("{text:?} is before 1980, which FAT file systems cannot store"));
        }
        let days = days_from_civil(year, month, day);
        Ok(Timestamp { unix: days * 86_400 + hour * 3600 + minute * 60 + second })
    }

    /// Parse a Release file's `Date:` as Debian's archive software writes it
    /// (`Tue, 01 Dec 2026 19:40:00 UTC`, RFC 2822 in UTC).
    pub fn parse_release_date(text: &str) -> Result<Self, String> {
        const MONTHS: [&str; 12] =
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let expected =
            || format!("expected a Release date like \"Tue, 01 Dec 2026 19:40:00 UTC\", got {text:?}");
        let fields: Vec<&str> = text.split(' ').collect();
        let [weekday, day, month, year, time, "UTC"] = fields.as_slice() else { return Err(expected()) };
        if weekday.len() != 4 || !weekday.ends_with(',') || day.len() > 2 {
            return Err(expected());
        }
        let month = MONTHS.iter().position(|m| m == month).ok_or_else(expected)? + 1;
        Self::parse_rfc3339_utc(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).map_err(|_| expected())
    }

    pub fn unix(self) -> i64 {
        self.unix
    }

    /// (year, month, day, hour, minute, second) in UTC.
    pub fn civil(self) -> (i64, i64, i64, i64, i64, i64) {
        let days = self.unix.div_euclid(86_400);
        let secs = self.unix.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
    }

    /// snapshot.debian.org's form: `20260712T000000Z`.
    pub fn snapshot_id(self) -> String {
        let (y, mo, d, h, mi, s) = self.civil();
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.civil();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

impl TryFrom<String> for Timestamp {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Timestamp::parse_rfc3339_utc(&text)
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse_rfc3339_utc(&text).map_err(serde::de::Error::custom)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_epochs() {
        let t = Timestamp::parse_rfc3339_utc("2026-07-12T00:00:00Z").unwrap();
        assert_eq!(t.unix(), 1_783_814_400);
        assert_eq!(t.snapshot_id(), "20260712T000000Z");
        assert_eq!(Timestamp::parse_rfc3339_utc("1980-01-01T00:00:00Z").unwrap().unix(), 315_532_800);
        assert_eq!(Timestamp::parse_rfc3339_utc("2000-02-29T23:59:59Z").unwrap().unix(), 951_868_799);
    }

    #[test]
    fn rejects_malformed_and_impossible() {
        for bad in [
            "2026-07-12",
            "2026-07-12T00:00:00+00:00",
            "2026-07-12T00:00:00.5Z",
            "2026-02-30T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-07-12T24:00:00Z",
            "1979-12-31T23:59:59Z",
            "2026-07-1xT00:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339_utc(bad).is_err(), "{bad} accepted");
        }
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(unix in 315_532_800i64..4_102_444_800) {
            let t = Timestamp::from_unix(unix);
            prop_assert_eq!(Timestamp::parse_rfc3339_utc(&t.to_string()).unwrap(), t);
        }
    }

    #[test]
    fn release_dates_parse_as_debian_writes_them() {
        let t = Timestamp::parse_release_date("Tue, 01 Dec 2026 19:40:00 UTC").unwrap();
        assert_eq!(t.snapshot_id(), "20261201T194000Z");
        let t = Timestamp::parse_release_date("Sat, 11 Jul 2026 10:16:37 UTC").unwrap();
        assert_eq!(t.to_string(), "2026-07-11T10:16:37Z");
        for bad in [
            "Tue, 01 Dec 2026 19:40:00 +0000",
            "01 Dec 2026 19:40:00 UTC",
            "Tue, 31 Feb 2026 00:00:00 UTC",
            "Tue, 01 Foo 2026 19:40:00 UTC",
            "",
        ] {
            assert!(Timestamp::parse_release_date(bad).is_err(), "{bad}");
        }
    }
}
