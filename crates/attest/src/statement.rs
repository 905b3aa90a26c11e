//! The in-toto Statement v1 a witness signs: subject = the ISO (name, SHA-256); predicate = a
//! SLSA Verification Summary (v1) of the rebuild: verifier, time, the source commit and lock as
//! input attestations, PASSED or FAILED.

use crate::AttestError;
use serde_json::{Value, json};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const VSA_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// The policy a PASSED result means: the ISO was rebuilt from source, bit for bit.
pub const POLICY: &str = "urn:ceremony-os:policy:rebuilt-bit-for-bit:v1";
const COMMIT_URI: &str = "urn:ceremony-os:source-commit";
const LOCK_URI: &str = "urn:ceremony-os:lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "PASSED",
            Verdict::Failed => "FAILED",
        }
    }
}

/// What a witness verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub iso_name: String,
    pub iso_sha256: String,
    /// Who verified (for example the witness's name or e-mail address).
    pub verifier: String,
    /// When, as the witness states it (RFC 3339, UTC).
    pub time_verified: String,
    /// The source commit (40 hex digits), when known.
    pub commit: Option<String>,
    /// SHA-256 of the lock the rebuild used.
    pub lock_sha256: Option<String>,
    pub verdict: Verdict,
}

impl Verification {
    /// The statement as JSON bytes (keys sorted: the same verification gives the same bytes).
    pub fn statement(&self) -> Vec<u8> {
        let mut inputs = Vec::new();
        if let Some(commit) = &self.commit {
            inputs.push(json!({"uri": COMMIT_URI, "digest": {"gitCommit": commit}}));
        }
        if let Some(lock) = &self.lock_sha256 {
            inputs.push(json!({"uri": LOCK_URI, "digest": {"sha256": lock}}));
        }
        let statement = json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.iso_name, "digest": {"sha256": self.iso_sha256}}],
            "predicateType": VSA_TYPE,
            "predicate": {
                "verifier": {"id": self.verifier},
                "timeVerified": self.time_verified,
                "resourceUri": format!("urn:ceremony-os:image:{}", self.iso_name),
                "policy": {"uri": POLICY},
                "inputAttestations": inputs,
                "verificationResult": self.verdict.as_str(),
                "verifiedLevels": [],
            },
        });
        serde_json::to_vec(&statement).expect("a statement serializes")
    }

    /// Read a statement back (what the M-of-N check needs of it).
    pub fn parse(payload: &[u8]) -> Result<Verification, AttestError> {
        let bad = |what: &str| AttestError::Malformed(format!("the statement {what}"));
        let v: Value = serde_json::from_slice(payload).map_err(|e| bad(&format!("is not JSON: {e}")))?;
        if v["_type"] != STATEMENT_TYPE {
            return Err(bad(&format!("has _type {}, expected {STATEMENT_TYPE}", v["_type"])));
        }
        if v["predicateType"] != VSA_TYPE {
            return Err(bad(&format!("has predicateType {}, expected {VSA_TYPE}", v["predicateType"])));
        }
        let subjects = v["subject"].as_array().ok_or_else(|| bad("has no subject list"))?;
        let [subject] = subjects.as_slice() else {
            return Err(bad(&format!("has {} subjects, expected one ISO", subjects.len())));
        };
        let text = |value: &Value, what: &str| {
            value.as_str().map(str::to_string).ok_or_else(|| bad(&format!("has no {what}")))
        };
        let predicate = &v["predicate"];
        let verdict = match predicate["verificationResult"].as_str() {
            Some("PASSED") => Verdict::Passed,
            Some("FAILED") => Verdict::Failed,
            other => return Err(bad(&format!("has verificationResult {other:?}"))),
        };
        let mut commit = None;
        let mut lock_sha256 = None;
        for input in predicate["inputAttestations"].as_array().into_iter().flatten() {
            match input["uri"].as_str() {
                Some(COMMIT_URI) => commit = input["digest"]["gitCommit"].as_str().map(str::to_string),
                Some(LOCK_URI) => lock_sha256 = input["digest"]["sha256"].as_str().map(str::to_string),
                _ => {}
            }
        }
        Ok(Verification {
            iso_name: text(&subject["name"], "subject name")?,
            iso_sha256: text(&subject["digest"]["sha256"], "subject sha256")?,
            verifier: text(&predicate["verifier"]["id"], "verifier id")?,
            time_verified: text(&predicate["timeVerified"], "timeVerified")?,
            commit,
            lock_sha256,
            verdict,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn example() -> Verification {
        Verification {
            iso_name: "ceremony-os-0.1.0-amd64.iso".into(),
            iso_sha256: "ab".repeat(32),
            verifier: "alice@example.org".into(),
            time_verified: "2026-07-12T00:00:00Z".into(),
            commit: Some("12".repeat(20)),
            lock_sha256: Some("cd".repeat(32)),
            verdict: Verdict::Passed,
        }
    }

    #[test]
    fn statements_round_trip_deterministically() {
        let v = example();
        assert_eq!(v.statement(), v.statement());
        assert_eq!(Verification::parse(&v.statement()).unwrap(), v);
        let failed = Verification { verdict: Verdict::Failed, commit: None, ..example() };
        assert_eq!(Verification::parse(&failed.statement()).unwrap(), failed);
    }

    #[test]
    fn other_statements_are_refused() {
        let text = String::from_utf8(example().statement()).unwrap();
        for (from, to, expected) in [
            (VSA_TYPE, "https://slsa.dev/provenance/v1", "predicateType"),
            (STATEMENT_TYPE, "https://in-toto.io/Statement/v0.1", "_type"),
            ("\"PASSED\"", "\"MAYBE\"", "verificationResult"),
        ] {
            let err = Verification::parse(text.replace(from, to).as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
