//! What both binaries (`ceremony-os` on the build host, `ceremony` on the laptop) show people,
//! in one place so they say it the same way: an error with its causes, and a digest for the
//! witnesses to compare or write down. Text only: the binaries print it.

/// The error and its causes, each said once: a cause whose text its parent already shows (an
/// I/O error inside "path: error") is not repeated.
pub fn error(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(text.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A digest for people: the title, then the hex and the PGP words (lines of eight words), the
/// continuation lines aligned under the first word.
pub fn digest(title: &str, hex: &str) -> String {
    const WORDS: &str = "  words  ";
    let words =
        ceremony_os_pgpwords::format_hex(hex).replace('\n', &format!("\n{}", " ".repeat(WORDS.len())));
    format!("{title}\n  sha256 {hex}\n{WORDS}{words}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(io).context("cannot write /out/x: disk full").context("publishing");
        assert_eq!(error(&e), "publishing: cannot write /out/x: disk full");
    }

    #[test]
    fn the_words_line_up_under_the_first_word() {
        let hex = "00".repeat(32);
        let text = digest("ISO", &hex);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ISO");
        assert_eq!(lines[1], format!("  sha256 {hex}"));
        assert!(lines[2].starts_with("  words  aardvark "), "{text}");
        assert_eq!(lines.len(), 2 + 4, "32 words, eight a line: {text}");
        for line in &lines[3..] {
            assert!(line.starts_with("         ") && !line[9..].starts_with(' '), "{text}");
        }
    }
}
