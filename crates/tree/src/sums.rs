//! SHA256SUMS files as `sha256sum -c` reads them: `<64 hex> <space or *><name>` per line.

/// The digest a SHA256SUMS text gives for `name`: none when no line names it; an error when two
/// lines do (`sha256sum -c` checks both, so the first alone is not what the file says).
pub fn sums_entry(text: &str, name: &str) -> Result<Option<String>, String> {
    let mut found: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let Some((digest, file)) = line.split_once(char::is_whitespace) else { continue };
        let file = file.strip_prefix(['*', ' ']).unwrap_or(file);
        if file != name || digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if let Some((first, _)) = &found {
            return Err(format!(
                "lines {} and {} both name {name}: which one is meant is ambiguous",
                first + 1,
                i + 1
            ));
        }
        found = Some((i, digest.to_ascii_lowercase()));
    }
    Ok(found.map(|(_, digest)| digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_name_or_an_error() {
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        let text = format!("{a}  os.iso\n{b} *other.iso\n");
        assert_eq!(sums_entry(&text, "os.iso").unwrap(), Some(a.clone()));
        assert_eq!(sums_entry(&text, "other.iso").unwrap(), Some(b.clone()));
        assert_eq!(sums_entry(&text, "missing.iso").unwrap(), None);
        assert_eq!(sums_entry(&text, "s.iso").unwrap(), None, "a suffix is not the name");
        let twice = format!("{a}  os.iso\n{b}  os.iso\n");
        assert!(sums_entry(&twice, "os.iso").unwrap_err().contains("lines 1 and 2 both name os.iso"));
        assert_eq!(sums_entry(&format!("{}  os.iso\n", a.to_uppercase()), "os.iso").unwrap(), Some(a));
    }
}
