//! deb822 paragraphs (Packages, Release, dpkg status): `Field: value` lines, continuation lines
//! starting with white space, paragraphs separated by blank lines. Field names compare
//! case-insensitively, as Debian policy 5.1 says.

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of a field (continuation lines joined with `\n`), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("deb822 line {line}: {message}")]
pub struct Deb822Error {
    pub line: usize,
    pub message: String,
}

/// Parse every paragraph of a deb822 document. An InRelease file's clear-signed wrapper is removed
/// (and the signature checked) by `crate::openpgp` first.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, Deb822Error> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::default();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(Deb822Error {
                    line: line_no,
                    message: "continuation line before any field".into(),
                });
            };
            value.push('\n');
            value.push_str(line.trim_start());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Deb822Error {
                line: line_no,
                message: format!("expected `Field: value`, got {line:?}"),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(Deb822Error { line: line_no, message: format!("bad field name {name:?}") });
        }
        current.fields.push((name.to_string(), value.trim().to_string()));
    }
    if !current.fields.is_empty() {
        paragraphs.push(current);
    }
    Ok(paragraphs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let text = "Package: a\nDescription: short\n long line\n .\n\n\nPackage: b\nsha256: x\n";
        let ps = parse(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("package"), Some("a"));
        assert_eq!(ps[0].get("Description"), Some("short\nlong line\n."));
        assert_eq!(ps[1].get("SHA256"), Some("x"));
        assert_eq!(ps[1].get("Version"), None);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("Package: a\nnonsense\n").unwrap_err().line, 2);
        assert_eq!(parse(" leading continuation\n").unwrap_err().line, 1);
    }
}
