//! Errors of the spec crate: every one names the file and, where known, the line and column.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    /// Syntax, type, unknown-key, missing-field and value errors, positioned in the file.
    #[error("{}:{line}:{column}: {message}\n{snippet}", path.display())]
    Parse { path: PathBuf, line: usize, column: usize, message: String, snippet: String },

    /// A consistency rule that spans several fields (no single position to point at).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl SpecError {
    /// Turn a `toml` deserialization error into a positioned one: `file:line:col: message`,
    /// followed by the offending source line and a caret under the column.
    pub(crate) fn from_toml(path: &std::path::Path, text: &str, err: &toml::de::Error) -> Self {
        let message = err.message().trim().to_string();
        let Some(span) = err.span() else {
            return SpecError::Invalid { path: path.to_path_buf(), message };
        };
        let (line, column) = line_column(text, span.start);
        let source_line = text.lines().nth(line - 1).unwrap_or("");
        let snippet = format!("  {source_line}\n  {}^", " ".repeat(column.saturating_sub(1)));
        SpecError::Parse { path: path.to_path_buf(), line, column, message, snippet }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 11), (2, 6));
    }
}
