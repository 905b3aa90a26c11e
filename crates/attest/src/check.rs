//! The M-of-N check: which attestations count for an ISO digest, which do not and why, and
//! whether at least M distinct trusted witnesses attest PASSED.

use crate::dsse::Envelope;
use crate::statement::{PAYLOAD_TYPE, Verdict, Verification};
use crate::trust::Witness;

/// What the attestations must show.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub iso_sha256: String,
    /// When given, the statement must name this source commit.
    pub commit: Option<String>,
    /// When given, the statement must name this lock digest.
    pub lock_sha256: Option<String>,
    /// How many distinct witnesses must attest PASSED.
    pub required: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Accepted {
    pub file: String,
    pub witness: String,
    pub keyid: String,
    pub time_verified: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub required: usize,
    pub accepted: Vec<Accepted>,
    pub rejected: Vec<Rejected>,
    /// Trusted witnesses with no accepted attestation.
    pub missing: Vec<String>,
    pub passed: bool,
}

impl Requirement {
    /// What a count must show, checked: `iso_sha256` a SHA-256 (any case, white space around it
    /// ignored), `required` between 1 and the number of distinct witnesses.
    pub fn new(
        iso_sha256: &str,
        required: usize,
        commit: Option<&str>,
        lock_sha256: Option<&str>,
        witnesses: &[Witness],
    ) -> Result<Requirement, String> {
        let iso_sha256 = iso_sha256.trim().to_ascii_lowercase();
        if iso_sha256.len() != 64 || !iso_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("--digest {iso_sha256:?} is not a SHA-256 (64 hex digits)"));
        }
        let mut people: Vec<&str> = witnesses.iter().map(|w| w.name.as_str()).collect();
        people.sort();
        people.dedup();
        if people.is_empty() {
            return Err("the trust file names no witness".into());
        }
        if required == 0 || required > people.len() {
            return Err(format!(
                "--require {required} must be between 1 and the {} witnesses of the trust file",
                people.len()
            ));
        }
        Ok(Requirement {
            iso_sha256,
            commit: commit.map(str::to_ascii_lowercase),
            lock_sha256: lock_sha256.map(str::to_ascii_lowercase),
            required,
        })
    }
}

/// Check each attestation (`(file name, bytes)`) against the witnesses and the requirement.
pub fn check(attestations: &[(String, Vec<u8>)], witnesses: &[Witness], requirement: &Requirement) -> Report {
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut rejected = Vec::new();
    for (file, bytes) in attestations {
        match judge(bytes, witnesses, requirement) {
            Ok((witness, time_verified)) => {
                // One person, however many keys they sign with, is one witness.
                if let Some(earlier) = accepted.iter().find(|a| a.witness == witness.name) {
                    rejected.push(Rejected {
                        file: file.clone(),
                        reason: format!("duplicate: {} already attested in {}", witness.name, earlier.file),
                    });
                } else {
                    accepted.push(Accepted {
                        file: file.clone(),
                        witness: witness.name.clone(),
                        keyid: witness.key.keyid(),
                        time_verified,
                    });
                }
            }
            Err(reason) => rejected.push(Rejected { file: file.clone(), reason }),
        }
    }
    let mut missing: Vec<String> = Vec::new();
    for w in witnesses {
        if !accepted.iter().any(|a| a.witness == w.name) && !missing.contains(&w.name) {
            missing.push(w.name.clone());
        }
    }
    let passed = requirement.required > 0 && accepted.len() >= requirement.required;
    Report { required: requirement.required, accepted, rejected, missing, passed }
}

/// The witness an attestation counts for, or why it does not count.
fn judge<'w>(
    bytes: &[u8],
    witnesses: &'w [Witness],
    requirement: &Requirement,
) -> Result<(&'w Witness, String), String> {
    let envelope = Envelope::from_json(bytes).map_err(|e| format!("malformed: {e}"))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(format!("malformed: payloadType {:?}, expected {PAYLOAD_TYPE}", envelope.payload_type));
    }
    let signed = envelope.signed_bytes();
    let mut reasons = Vec::new();
    let mut signer = None;
    for sig in &envelope.signatures {
        match witnesses.iter().find(|w| w.key.keyid() == sig.keyid) {
            // The envelope's text is the attacker's: quoted and escaped, never raw on a terminal.
            None if sig.keyid.is_empty() => reasons.push("unknown key (no keyid)".into()),
            None => reasons.push(format!("unknown key {:?}", sig.keyid)),
            Some(w) if !w.key.verifies(&signed, &sig.sig) => {
                reasons.push(format!("bad signature for {}'s key", w.name))
            }
            Some(w) => {
                signer = Some(w);
                break;
            }
        }
    }
    let Some(witness) = signer else {
        return Err(if reasons.is_empty() { "not signed".into() } else { reasons.join("; ") });
    };
    let statement = Verification::parse(&envelope.payload).map_err(|e| format!("malformed: {e}"))?;
    if !statement.iso_sha256.eq_ignore_ascii_case(&requirement.iso_sha256) {
        return Err(format!("{} attests another ISO: sha256 {:?}", witness.name, statement.iso_sha256));
    }
    if statement.verdict == Verdict::Failed {
        return Err(format!("{} attests FAILED: their rebuild differed", witness.name));
    }
    if let Some(commit) = &requirement.commit
        && statement.commit.as_deref() != Some(commit.as_str())
    {
        return Err(format!("{} attests another source commit: {:?}", witness.name, statement.commit));
    }
    if let Some(lock) = &requirement.lock_sha256
        && !statement.lock_sha256.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(lock))
    {
        return Err(format!("{} attests another lock: {:?}", witness.name, statement.lock_sha256));
    }
    Ok((witness, statement.time_verified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::statement::Verdict;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed(&[seed; 32])
    }

    fn attest(key: &SigningKey, iso: &str, verdict: Verdict) -> Vec<u8> {
        let v = Verification {
            iso_name: "os.iso".into(),
            iso_sha256: iso.into(),
            verifier: "w".into(),
            time_verified: "2026-07-12T00:00:00Z".into(),
            commit: Some("c".repeat(40)),
            lock_sha256: None,
            verdict,
        };
        key.sign_envelope(PAYLOAD_TYPE, v.statement()).to_json().into_bytes()
    }

    #[test]
    fn m_of_n_counts_distinct_trusted_passed_attestations_for_the_digest() {
        let keys: Vec<SigningKey> = (1..=4).map(key).collect();
        let witnesses: Vec<Witness> = keys[..3]
            .iter()
            .enumerate()
            .map(|(i, k)| Witness { name: format!("w{i}"), key: k.public(), line: i + 1 })
            .collect();
        let iso = "aa".repeat(32);
        let mut forged = attest(&keys[1], &iso, Verdict::Passed);
        let text = String::from_utf8(forged.clone()).unwrap();
        let env = Envelope::from_json(text.as_bytes()).unwrap();
        let mut tampered = env.clone();
        tampered.payload =
            String::from_utf8(env.payload.clone()).unwrap().replace("os.iso", "xx.iso").into_bytes();
        forged = tampered.to_json().into_bytes();
        let files = vec![
            ("a.json".to_string(), attest(&keys[0], &iso, Verdict::Passed)),
            ("b.json".to_string(), attest(&keys[1], &iso, Verdict::Passed)),
            ("c.json".to_string(), attest(&keys[2], &"bb".repeat(32), Verdict::Passed)),
            ("d.json".to_string(), attest(&keys[3], &iso, Verdict::Passed)),
            ("e.json".to_string(), attest(&keys[0], &iso, Verdict::Passed)),
            ("f.json".to_string(), forged),
            ("g.json".to_string(), attest(&keys[2], &iso, Verdict::Failed)),
            ("h.json".to_string(), b"{}".to_vec()),
        ];
        let need =
            |required| Requirement { iso_sha256: iso.clone(), commit: None, lock_sha256: None, required };
        let report = check(&files, &witnesses, &need(2));
        assert!(report.passed);
        assert_eq!(report.accepted.iter().map(|a| a.witness.as_str()).collect::<Vec<_>>(), ["w0", "w1"]);
        assert_eq!(report.missing, ["w2"]);
        let reasons: Vec<(&str, &str)> =
            report.rejected.iter().map(|r| (r.file.as_str(), r.reason.as_str())).collect();
        assert!(reasons[0].0 == "c.json" && reasons[0].1.contains("another ISO"), "{reasons:?}");
        assert!(reasons[1].0 == "d.json" && reasons[1].1.starts_with("unknown key \"SHA256:"), "{reasons:?}");
        assert!(reasons[2].0 == "e.json" && reasons[2].1.starts_with("duplicate: w0"), "{reasons:?}");
        assert!(reasons[3].0 == "f.json" && reasons[3].1.contains("bad signature for w1"), "{reasons:?}");
        assert!(reasons[4].0 == "g.json" && reasons[4].1.contains("attests FAILED"), "{reasons:?}");
        assert!(reasons[5].0 == "h.json" && reasons[5].1.starts_with("malformed"), "{reasons:?}");
        assert!(!check(&files, &witnesses, &need(3)).passed);
        assert!(!check(&files, &witnesses, &need(0)).passed, "zero required is never a pass");
        let commit = Requirement { commit: Some("d".repeat(40)), ..need(1) };
        assert!(!check(&files, &witnesses, &commit).passed);
    }

    #[test]
    fn a_requirement_counts_people_and_checks_the_digest() {
        let witnesses = vec![
            Witness { name: "alice".into(), key: key(1).public(), line: 1 },
            Witness { name: "alice".into(), key: key(2).public(), line: 2 },
            Witness { name: "bob".into(), key: key(3).public(), line: 3 },
        ];
        let digest = format!(" {}\n", "AB".repeat(32));
        let r = Requirement::new(&digest, 2, Some("C0FFEE"), None, &witnesses).unwrap();
        assert_eq!((r.iso_sha256, r.commit.as_deref()), ("ab".repeat(32), Some("c0ffee")));
        let err = Requirement::new(&digest, 3, None, None, &witnesses).unwrap_err();
        assert!(err.contains("between 1 and the 2 witnesses"), "{err}");
        assert!(Requirement::new(&digest, 0, None, None, &witnesses).is_err());
        assert!(Requirement::new("abc", 1, None, None, &witnesses).unwrap_err().contains("not a SHA-256"));
        assert!(Requirement::new(&digest, 1, None, None, &[]).unwrap_err().contains("names no witness"));
    }

    /// Two lines for one person (a laptop key and a token key) are one witness: their two
    /// attestations count once, and the person is not also "missing".
    #[test]
    fn one_person_with_two_keys_is_one_witness() {
        let (laptop, token, bob) = (key(1), key(2), key(3));
        let witnesses = vec![
            Witness { name: "alice".into(), key: laptop.public(), line: 1 },
            Witness { name: "alice".into(), key: token.public(), line: 2 },
            Witness { name: "bob".into(), key: bob.public(), line: 3 },
        ];
        let iso = "aa".repeat(32);
        let files = vec![
            ("laptop.json".to_string(), attest(&laptop, &iso, Verdict::Passed)),
            ("token.json".to_string(), attest(&token, &iso, Verdict::Passed)),
        ];
        let report = check(
            &files,
            &witnesses,
            &Requirement { iso_sha256: iso, commit: None, lock_sha256: None, required: 2 },
        );
        assert!(!report.passed, "{report:?}");
        assert_eq!(report.accepted.len(), 1);
        assert!(report.rejected[0].reason.starts_with("duplicate: alice already attested in laptop.json"));
        assert_eq!(report.missing, ["bob"]);
    }

    /// An unsigned envelope's keyid reaches the report quoted, its control characters escaped: it
    /// cannot draw a line of its own on the terminal.
    #[test]
    fn attacker_text_is_escaped() {
        let iso = "aa".repeat(32);
        let envelope = format!(
            r#"{{"payloadType":"{PAYLOAD_TYPE}","payload":"","signatures":[{{"keyid":"x\r\u001b[2KWITNESSED: 2 of 2","sig":""}}]}}"#
        );
        let witnesses = vec![Witness { name: "alice".into(), key: key(1).public(), line: 1 }];
        let report = check(
            &[("evil.json".into(), envelope.into_bytes())],
            &witnesses,
            &Requirement { iso_sha256: iso, commit: None, lock_sha256: None, required: 1 },
        );
        let reason = &report.rejected[0].reason;
        assert!(!reason.contains('\r') && !reason.contains('\u{1b}'), "{reason:?}");
        assert!(reason.contains("\\r\\u{1b}[2KWITNESSED"), "{reason}");
    }
}
