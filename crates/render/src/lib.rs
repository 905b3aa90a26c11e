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
    // Causes carry text from inputs (names, fields): it may break lines, never steer the terminal.
    out.split('\n').map(controls_escaped).collect::<Vec<_>>().join("\n")
}

/// `text` with every control character (ESC, CR, backspace, newline, the C1 range) written as
/// `\xNN` or `\u{NNNN}`: text from an input, shown on one line, cannot move the cursor, erase
/// or recolour what was printed, or start a line of its own.
pub fn controls_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c as u32 {
            _ if !c.is_control() => out.push(c),
            n if n <= 0xff => out.push_str(&format!("\\x{n:02x}")),
            n => out.push_str(&format!("\\u{{{n:04x}}}")),
        }
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
    fn text_from_inputs_cannot_steer_the_terminal() {
        assert_eq!(controls_escaped("a\x1b[2K\rWITNESSED\n\u{9b}x"), "a\\x1b[2K\\x0dWITNESSED\\x0a\\x9bx");
        assert_eq!(controls_escaped("plain é"), "plain é");
        let e = anyhow::anyhow!("name \"\x1b]0;title\x07\"").context("line one\nline two");
        assert_eq!(error(&e), "line one\nline two: name \"\\x1b]0;title\\x07\"");
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
