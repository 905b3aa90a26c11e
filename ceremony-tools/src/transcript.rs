//! The ceremony transcript: an append-only file of JSON lines, one record per command, each
//! carrying the SHA-256 of the line before it. Editing, deleting, inserting or reordering a
//! record breaks the chain at a place `verify` names; records appended by a forger are caught
//! against the head hash the witnesses wrote down (printed after every command as hex and PGP
//! words).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    /// SHA-256 of the previous line (without its newline); zeros for the first record.
    pub prev: String,
    /// UTC time the command ran (the laptop's clock).
    pub time: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    pub outcome: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranscriptError {
    #[error("line {line}: not a transcript record: {message}")]
    Malformed { line: usize, message: String },
    #[error(
        "line {line}: record has seq {found}, expected {expected}: a record was deleted, inserted or moved here"
    )]
    Sequence { line: usize, found: u64, expected: u64 },
    #[error("line {line} (seq {seq}): its prev is {found} but line {} hashes to {expected}: line {} was edited, or records were removed, inserted or swapped", line - 1, line - 1)]
    Chain { line: usize, seq: u64, found: String, expected: String },
    #[error("line 1 (seq {seq}): the first record must have prev {GENESIS}: records before it were removed")]
    Start { seq: u64 },
    #[error("the transcript's head is {actual}, the witnessed head is {expected}{}", appended_note(*appended_after))]
    Head { expected: String, actual: String, appended_after: Option<usize> },
    #[error("{0}")]
    Io(String),
}

fn appended_note(after: Option<usize>) -> String {
    match after {
        Some(line) => format!(": the records after line {line} were added after the head was witnessed"),
        None => ": the transcript differs from the one witnessed".into(),
    }
}

pub fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// Check the whole chain; return the records and the head hash (of the last line).
pub fn verify_text(text: &str) -> Result<(Vec<Record>, String), TranscriptError> {
    let mut records = Vec::new();
    let mut prev = GENESIS.to_string();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let record: Record = serde_json::from_str(line)
            .map_err(|e| TranscriptError::Malformed { line: line_no, message: e.to_string() })?;
        if line_no == 1 && record.prev != GENESIS {
            return Err(TranscriptError::Start { seq: record.seq });
        }
        if record.prev != prev {
            return Err(TranscriptError::Chain {
                line: line_no,
                seq: record.seq,
                found: record.prev,
                expected: prev,
            });
        }
        let expected_seq = line_no as u64;
        if record.seq != expected_seq {
            return Err(TranscriptError::Sequence {
                line: line_no,
                found: record.seq,
                expected: expected_seq,
            });
        }
        prev = line_hash(line);
        records.push(record);
    }
    Ok((records, prev))
}

/// Verify, and compare the head with the witnessed one if given.
pub fn verify_against(
    text: &str,
    witnessed_head: Option<&str>,
) -> Result<(Vec<Record>, String), TranscriptError> {
    let (records, head) = verify_text(text)?;
    if let Some(expected) = witnessed_head {
        let expected = expected.trim().to_ascii_lowercase();
        if head != expected {
            let appended_after = text.lines().position(|l| line_hash(l) == expected).map(|i| i + 1);
            return Err(TranscriptError::Head { expected, actual: head, appended_after });
        }
    }
    Ok((records, head))
}

/// Append a record to the transcript at `path` (created if missing), after verifying what is
/// already there. Returns the new head hash.
pub fn append(path: &Path, mut record: Record) -> Result<String, TranscriptError> {
    let io = |e: std::io::Error| TranscriptError::Io(format!("{}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new().create(true).append(true).read(true).open(path).map_err(io)?;
    file.lock().map_err(io)?;
    let text = std::fs::read_to_string(path).map_err(io)?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(TranscriptError::Malformed {
            line: text.lines().count(),
            message: "the last line is incomplete".into(),
        });
    }
    let (records, head) = verify_text(&text)?;
    record.seq = records.len() as u64 + 1;
    record.prev = head;
    let line = serde_json::to_string(&record).expect("a record serializes");
    file.write_all(format!("{line}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
    Ok(line_hash(&line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(command: &str) -> Record {
        Record {
            seq: 0,
            prev: String::new(),
            time: "2026-11-21T10:00:00Z".into(),
            command: command.into(),
            config_sha256: None,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::from([("root.pem".to_string(), "ab".repeat(32))]),
            outcome: "ok".into(),
        }
    }

    fn three() -> (tempfile::TempDir, std::path::PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transcript.jsonl");
        let mut head = String::new();
        for c in ["key generate", "root", "crl"] {
            head = append(&path, record(c)).unwrap();
        }
        (dir, path, head)
    }

    #[test]
    fn a_clean_chain_verifies_with_its_head() {
        let (_d, path, head) = three();
        let text = std::fs::read_to_string(&path).unwrap();
        let (records, computed) = verify_against(&text, Some(&head)).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].seq, 3);
        assert_eq!(computed, head);
    }

    #[test]
    fn edits_deletions_swaps_insertions_and_forged_appends_are_named() {
        let (_d, path, head) = three();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        let edited = text.replace("\"root\"", "\"r00t\"");
        assert!(matches!(verify_text(&edited), Err(TranscriptError::Chain { line: 3, .. })));

        let deleted = format!("{}\n{}\n", lines[0], lines[2]);
        assert!(matches!(verify_text(&deleted), Err(TranscriptError::Chain { line: 2, .. })));

        let first_deleted = format!("{}\n{}\n", lines[1], lines[2]);
        assert!(matches!(verify_text(&first_deleted), Err(TranscriptError::Start { seq: 2 })));

        let swapped = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1]);
        assert!(matches!(verify_text(&swapped), Err(TranscriptError::Chain { line: 2, .. })));

        // A forger appends a well-chained record: only the witnessed head catches it.
        let mut forged = record("key generate");
        forged.seq = 4;
        forged.prev = line_hash(lines[2]);
        let appended = format!("{text}{}\n", serde_json::to_string(&forged).unwrap());
        assert!(verify_text(&appended).is_ok());
        let err = verify_against(&appended, Some(&head)).unwrap_err();
        assert!(matches!(err, TranscriptError::Head { appended_after: Some(3), .. }), "{err}");
        assert!(err.to_string().contains("after line 3"));
    }

    #[test]
    fn appending_to_a_broken_transcript_is_refused() {
        let (_d, path, _) = three();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"crl\"", "\"crx\"")).unwrap();
        // The last record was edited: its own hash changed, so the chain is intact until a new
        // record is appended; the edit is caught by the witnessed head instead.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"root\"", "\"r00t\"")).unwrap();
        assert!(matches!(append(&path, record("x")), Err(TranscriptError::Chain { line: 3, .. })));
    }
}
