//! apt's `--print-uris` output: one line per .deb, `'URI' file-name size HASH`, with the URI
//! percent-encoded. We keep only the archive path (`pool/...`), which joins with the index.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrintUrisError {
    #[error("print-uris line {line}: expected `'URI' file size hash`, got {text:?}")]
    Malformed { line: usize, text: String },
    #[error("print-uris line {line}: {uri} is not under any of the mirrors {mirrors}")]
    ForeignUri { line: usize, uri: String, mirrors: String },
}

/// One line of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDownload {
    /// Archive path relative to the mirror base, percent-decoded.
    pub path: String,
    pub size: u64,
    /// Which of the given mirror bases the URI is under.
    pub base: usize,
}

/// Parse the output of `apt-get install --print-uris -qq` for mirror bases ending in `/`.
pub fn parse(text: &str, mirror_bases: &[&str]) -> Result<Vec<PlannedDownload>, PrintUrisError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = || PrintUrisError::Malformed { line: index + 1, text: line.to_string() };
        let rest = line.strip_prefix('\'').ok_or_else(malformed)?;
        let (uri, rest) = rest.split_once('\'').ok_or_else(malformed)?;
        // The hash field is empty for archives whose Release lists no MD5.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (&[_file, size] | &[_file, size, _]) = &fields[..] else {
            return Err(malformed());
        };
        let size = size.parse::<u64>().map_err(|_| malformed())?;
        let (base, relative) = mirror_bases
            .iter()
            .enumerate()
            .find_map(|(i, b)| uri.strip_prefix(b).map(|r| (i, r)))
            .ok_or_else(|| PrintUrisError::ForeignUri {
                line: index + 1,
                uri: uri.to_string(),
                mirrors: mirror_bases.join(", "),
            })?;
        out.push(PlannedDownload { path: percent_decode(relative), size, base });
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/print-uris-xorriso-squashfs.txt");

    #[test]
    fn recorded_output_parses_and_decodes() {
        let planned =
            parse(FIXTURE, &["http://deb.debian.org/debian-security/", "http://deb.debian.org/debian/"])
                .unwrap();
        assert_eq!(planned.len(), FIXTURE.lines().count());
        assert!(planned.iter().all(|p| p.base == 1), "the second base matched");
        let squashfs = planned.iter().find(|p| p.path.contains("squashfs-tools")).unwrap();
        assert_eq!(squashfs.path, "pool/main/s/squashfs-tools/squashfs-tools_4.5.1-1_amd64.deb");
        assert!(planned.iter().any(|p| p.path == "pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb"));
        assert!(planned.iter().all(|p| p.size > 0));
    }

    #[test]
    fn rejects_foreign_and_malformed() {
        let err = parse(FIXTURE, &["http://other.example/debian/"]).unwrap_err();
        assert!(matches!(err, PrintUrisError::ForeignUri { line: 1, .. }), "{err}");
        let err = parse("'http://x/pool/a.deb' a.deb notanumber MD5Sum:1\n", &["http://x/"]).unwrap_err();
        assert!(matches!(err, PrintUrisError::Malformed { line: 1, .. }));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2bb%3ac"), "a+b:c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
