//! The ceremony transcript: an append-only file of JSON lines, one record per command, each
//! carrying the SHA-256 of the line before it. After every command its new head (the SHA-256 of
//! the last line) is printed as hex and PGP words for the witnesses to write down.
//!
//! What the chain detects, and what it does not: the chain has no key. It names the first
//! broken record when a record was edited, deleted, inserted or moved and the file was not
//! rewritten consistently afterwards (accidental damage, a careless edit). Someone who can write
//! the file can rewrite it whole and recompute every hash, or cut it short: only a head the
//! witnesses wrote down catches that. Checked against witnessed heads (`verify_heads`), any change
//! to a record up to a witnessed head is detected, and so are records added after the last one.
//!
//! A command opens the transcript, locks it and verifies the chain *before* it touches the HSM
//! ([`Transcript::open`]); a transcript that does not verify, or cannot be created, stops the
//! command with nothing done.

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
    /// The plan step this record is, when the command ran from a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRef>,
}

/// Which plan (by the SHA-256 of its file) and which of its steps a record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRef {
    pub sha256: String,
    pub step: String,
    /// Run against a throwaway SoftHSM token (`plan run --dry-run`), not the ceremony's HSM.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rehearsal: bool,
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
    #[error(
        "{expected} is not a head of this transcript: a record up to the point it was witnessed was altered, removed or reordered, or it is another transcript"
    )]
    UnknownHead { expected: String },
    #[error(
        "the witnessed heads are in another order than in the transcript ({earlier} comes after {later})"
    )]
    HeadOrder { earlier: String, later: String },
    #[error(
        "{after} record(s) follow the last witnessed head (record {at} of {total}): they were added after it was witnessed"
    )]
    Appended { at: usize, total: usize, after: usize },
    #[error("{0:?} is neither a SHA-256 in hex nor 32 PGP words")]
    HeadSyntax(String),
    #[error("{0}")]
    Io(String),
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

/// A head as witnesses write it: 64 hex digits, or 32 PGP words (separated by white space).
pub fn parse_head(text: &str) -> Result<String, TranscriptError> {
    let compact: String = text.split_whitespace().collect::<Vec<_>>().join("");
    if compact.len() == 64 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(compact.to_ascii_lowercase());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    match ceremony_os_pgpwords::decode(&words) {
        Ok(bytes) if bytes.len() == 32 => Ok(hex::encode(bytes)),
        _ => Err(TranscriptError::HeadSyntax(text.trim().to_string())),
    }
}

/// How the transcript stands against the witnessed heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// The record number (1-based) each witnessed head points at, in the order given.
    pub at: Vec<usize>,
    pub total: usize,
}

/// Verify the chain and find every witnessed head in it, in order. With `prefix`, records after
/// the last witnessed head are allowed (reported by the caller); without, they are an error.
pub fn verify_heads(
    text: &str,
    heads: &[String],
    prefix: bool,
) -> Result<(Vec<Record>, String, Witnessed), TranscriptError> {
    let (records, head) = verify_text(text)?;
    let hashes: Vec<String> = text.lines().map(line_hash).collect();
    let mut at = Vec::new();
    for (i, wanted) in heads.iter().enumerate() {
        let position = hashes
            .iter()
            .position(|h| h == wanted)
            .ok_or_else(|| TranscriptError::UnknownHead { expected: wanted.clone() })?;
        if let Some(previous) = at.last()
            && position + 1 < *previous
        {
            return Err(TranscriptError::HeadOrder { earlier: heads[i - 1].clone(), later: wanted.clone() });
        }
        at.push(position + 1);
    }
    if let Some(last) = at.last()
        && *last < records.len()
        && !prefix
    {
        return Err(TranscriptError::Appended {
            at: *last,
            total: records.len(),
            after: records.len() - last,
        });
    }
    Ok((records, head, Witnessed { at, total: hashes.len() }))
}

/// An open transcript: locked, its chain verified. Opened before the HSM is touched.
#[derive(Debug)]
pub struct Transcript {
    path: std::path::PathBuf,
    file: std::fs::File,
    records: Vec<Record>,
    head: String,
}

impl Transcript {
    /// Open (or create, in an existing directory) the transcript at `path`, take its lock and
    /// verify what it holds.
    pub fn open(path: &Path) -> Result<Transcript, TranscriptError> {
        let io = |e: std::io::Error| TranscriptError::Io(format!("{}: {e}", path.display()));
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(TranscriptError::Io(format!(
                "{}: directory {} does not exist",
                path.display(),
                parent.display()
            )));
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).read(true).open(path).map_err(io)?;
        file.lock().map_err(io)?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(TranscriptError::Malformed {
                line: text.lines().count(),
                message: "the last line is incomplete".into(),
            });
        }
        let (records, head) = verify_text(&text)?;
        Ok(Transcript { path: path.to_path_buf(), file, records, head })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The head: the SHA-256 of the last line (zeros when empty).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The records, verified when the transcript was opened, and those appended since.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Append a record (its seq and prev are set here); return the new head.
    pub fn append(&mut self, mut record: Record) -> Result<String, TranscriptError> {
        let io = |e: std::io::Error| TranscriptError::Io(format!("{}: {e}", self.path.display()));
        record.seq = self.records.len() as u64 + 1;
        record.prev = self.head.clone();
        let line = serde_json::to_string(&record).expect("a record serializes");
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.file.sync_all())
            .map_err(io)?;
        self.head = line_hash(&line);
        self.records.push(record);
        Ok(self.head.clone())
    }
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
            plan: None,
        }
    }

    fn three() -> (tempfile::TempDir, std::path::PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transcript.jsonl");
        let mut head = String::new();
        for c in ["key generate", "root", "crl"] {
            head = Transcript::open(&path).unwrap().append(record(c)).unwrap();
        }
        (dir, path, head)
    }

    #[test]
    fn a_clean_chain_verifies_with_its_head() {
        let (_d, path, head) = three();
        let text = std::fs::read_to_string(&path).unwrap();
        let (records, computed, witnessed) = verify_heads(&text, std::slice::from_ref(&head), false).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].seq, 3);
        assert_eq!(computed, head);
        assert_eq!(witnessed.at, [3]);
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
        let err = verify_heads(&appended, std::slice::from_ref(&head), false).unwrap_err();
        assert_eq!(err, TranscriptError::Appended { at: 3, total: 4, after: 1 });
        assert!(err.to_string().contains("record 3 of 4"));
        // Rewritten consistently from the start: the chain holds, the witnessed head does not.
        let mut rewritten = String::new();
        let mut prev = GENESIS.to_string();
        for (i, c) in ["key generate", "root", "crl"].iter().enumerate() {
            let mut r = record(if i == 1 { "r00t" } else { c });
            r.seq = i as u64 + 1;
            r.prev = prev;
            let line = serde_json::to_string(&r).unwrap();
            prev = line_hash(&line);
            rewritten.push_str(&format!("{line}\n"));
        }
        assert!(verify_text(&rewritten).is_ok(), "a keyless chain cannot tell");
        assert!(matches!(
            verify_heads(&rewritten, std::slice::from_ref(&head), false),
            Err(TranscriptError::UnknownHead { .. })
        ));
        // Cut short: the witnessed final head is gone.
        let cut = format!("{}\n{}\n", lines[0], lines[1]);
        assert!(matches!(
            verify_heads(&cut, std::slice::from_ref(&head), false),
            Err(TranscriptError::UnknownHead { .. })
        ));
    }

    #[test]
    fn heads_witnessed_along_the_way_are_checked_as_prefixes() {
        let (_d, path, last) = three();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = line_hash(text.lines().next().unwrap());
        let (_, _, witnessed) = verify_heads(&text, &[first.clone(), last.clone()], false).unwrap();
        assert_eq!(witnessed.at, [1, 3]);
        assert!(matches!(
            verify_heads(&text, std::slice::from_ref(&first), false),
            Err(TranscriptError::Appended { at: 1, .. })
        ));
        assert_eq!(verify_heads(&text, std::slice::from_ref(&first), true).unwrap().2.at, [1]);
        assert!(matches!(
            verify_heads(&text, &[last.clone(), first.clone()], false),
            Err(TranscriptError::HeadOrder { .. })
        ));
        // Heads as witnesses write them: PGP words.
        let words = ceremony_os_pgpwords::encode_hex(&last).unwrap().join(" ");
        assert_eq!(parse_head(&words).unwrap(), last);
        assert_eq!(parse_head(&last.to_uppercase()).unwrap(), last);
        assert!(parse_head("aardvark absurd").is_err());
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
        assert!(matches!(
            Transcript::open(&path).and_then(|mut t| t.append(record("x"))),
            Err(TranscriptError::Chain { line: 3, .. })
        ));
    }
}
