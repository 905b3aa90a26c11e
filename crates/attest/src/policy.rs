//! The witness policy as a reviewed, versioned file: who may witness (OpenSSH allowed_signers
//! lines) and how many must. A policy names the SHA-256 of the one it replaces, and counts only
//! if at least as many witnesses of that one as it required approved it, each with a signed DSSE
//! envelope whose payload is the new file, byte for byte: a change of who counts needs the same
//! M as a disc. The burner starts from a policy whose digest was written down (the root) and
//! follows the chain to the policy in force.
//!
//! ```toml
//! version = 2
//! replaces = "<SHA-256 of version 1>"   # absent in the root policy
//! required = 2
//! allowed_signers = """
//! alice@example.org ssh-ed25519 AAAA...
//! bob@example.org ssh-ed25519 AAAA...
//! """
//! ```

use crate::AttestError;
use crate::dsse::Envelope;
use crate::trust::Witness;
use sha2::{Digest, Sha256};

/// The payload type of an envelope approving a policy: its payload is the policy file.
pub const APPROVAL_PAYLOAD_TYPE: &str = "application/vnd.ceremony-os.witness-policy+toml";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where it came from, for messages.
    pub origin: String,
    pub version: u64,
    /// SHA-256 of the policy this one replaces.
    pub replaces: Option<String>,
    pub required: usize,
    pub witnesses: Vec<Witness>,
    /// SHA-256 of the file.
    pub sha256: String,
    bytes: Vec<u8>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u64,
    replaces: Option<String>,
    required: usize,
    allowed_signers: String,
}

impl Policy {
    /// Parse and check a policy file's bytes; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Policy, AttestError> {
        let bad = |message: String| AttestError::Malformed(format!("{origin}: {message}"));
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let file: PolicyFile = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        let witnesses = crate::trust::parse(&file.allowed_signers, &format!("{origin}: allowed_signers"))?;
        let mut people: Vec<&str> = witnesses.iter().map(|w| w.name.as_str()).collect();
        people.sort();
        people.dedup();
        if file.required == 0 || file.required > people.len() {
            return Err(bad(format!(
                "required = {} must be between 1 and the {} witnesses it lists",
                file.required,
                people.len()
            )));
        }
        match (&file.replaces, file.version) {
            (_, 0) => return Err(bad("version must be 1 or more".into())),
            (Some(_), 1) => return Err(bad("version 1 replaces nothing: remove replaces".into())),
            (None, v) if v > 1 => return Err(bad(format!("version {v} must name the policy it replaces"))),
            (Some(digest), _) if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) => {
                return Err(bad(format!("replaces = {digest:?} is not a SHA-256 (64 hex digits)")));
            }
            _ => {}
        }
        Ok(Policy {
            origin: origin.to_string(),
            version: file.version,
            replaces: file.replaces.map(|d| d.to_ascii_lowercase()),
            required: file.required,
            witnesses,
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.to_vec(),
        })
    }

    /// The witnesses of this policy who approved `next` (each person once), from `approvals`
    /// (`(file name, envelope bytes)`); the others are ignored.
    fn approvers(&self, next: &Policy, approvals: &[(String, Vec<u8>)]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (_, bytes) in approvals {
            let Ok(envelope) = Envelope::from_json(bytes) else { continue };
            if envelope.payload_type != APPROVAL_PAYLOAD_TYPE || envelope.payload != next.bytes {
                continue;
            }
            let signed = envelope.signed_bytes();
            for sig in &envelope.signatures {
                if let Some(w) = self
                    .witnesses
                    .iter()
                    .find(|w| w.key.keyid() == sig.keyid && w.key.verifies(&signed, &sig.sig))
                    && !names.contains(&w.name)
                {
                    names.push(w.name.clone());
                }
            }
        }
        names
    }
}

/// The policy in force: `chain` (`(file name, bytes)`, oldest first) starts at the policy whose
/// SHA-256 is `root_sha256`, and each later one replaces the one before it, with the version
/// after it, approved by at least as many of its witnesses as it required.
pub fn in_force(
    chain: &[(String, Vec<u8>)],
    root_sha256: &str,
    approvals: &[(String, Vec<u8>)],
) -> Result<Policy, AttestError> {
    let root_sha256 = root_sha256.trim().to_ascii_lowercase();
    let mut policies = chain.iter().map(|(origin, bytes)| Policy::parse(bytes, origin));
    let mut current =
        policies.next().ok_or_else(|| AttestError::Malformed("no policy file given".into()))??;
    if current.sha256 != root_sha256 {
        return Err(AttestError::Malformed(format!(
            "{} has SHA-256 {}, not the root policy's {root_sha256}: the chain must start at the policy whose digest was written down",
            current.origin, current.sha256
        )));
    }
    for next in policies {
        let next = next?;
        if next.replaces.as_deref() != Some(current.sha256.as_str())
            || Some(next.version) != current.version.checked_add(1)
        {
            return Err(AttestError::Malformed(format!(
                "{} (version {}) does not replace {} (version {}, SHA-256 {}): the chain must list each version in order",
                next.origin, next.version, current.origin, current.version, current.sha256
            )));
        }
        // A second successor the same witnesses approved is a fork: which one is in force
        // cannot be told from the files, so neither is.
        for (origin, bytes) in approvals {
            let Ok(envelope) = Envelope::from_json(bytes) else { continue };
            if envelope.payload_type != APPROVAL_PAYLOAD_TYPE || envelope.payload == next.bytes {
                continue;
            }
            let Ok(other) = Policy::parse(&envelope.payload, origin) else { continue };
            if other.replaces.as_deref() == Some(current.sha256.as_str())
                && current.approvers(&other, approvals).len() >= current.required
            {
                return Err(AttestError::Malformed(format!(
                    "{origin} approves another successor of {} (SHA-256 {}), approved by as many witnesses as {}: the policy forked; neither is in force",
                    current.origin, other.sha256, next.origin
                )));
            }
        }
        let approvers = current.approvers(&next, approvals);
        if approvers.len() < current.required {
            return Err(AttestError::Malformed(format!(
                "{} (version {}) is approved by {} of the {} witnesses of version {} it needs{}: a change of who witnesses needs the same M",
                next.origin,
                next.version,
                approvers.len(),
                current.required,
                current.version,
                if approvers.is_empty() { String::new() } else { format!(" ({})", approvers.join(", ")) }
            )));
        }
        current = next;
    }
    Ok(current)
}

/// [`in_force`], and the policy in force must be the one whose SHA-256 was written down last
/// (`head`), so that leaving the later files out cannot bring an older policy back.
pub fn in_force_at(
    chain: &[(String, Vec<u8>)],
    root_sha256: &str,
    head_sha256: &str,
    approvals: &[(String, Vec<u8>)],
) -> Result<Policy, AttestError> {
    let policy = in_force(chain, root_sha256, approvals)?;
    let head = head_sha256.trim().to_ascii_lowercase();
    if policy.sha256 != head {
        return Err(AttestError::Malformed(format!(
            "the chain ends at {} (version {}, SHA-256 {}), not at the policy written down as in force ({head}): a later version is missing, or this is another chain",
            policy.origin, policy.version, policy.sha256
        )));
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed(&[seed; 32])
    }

    fn policy(version: u64, replaces: Option<&str>, required: usize, signers: &[(&str, u8)]) -> Vec<u8> {
        let lines: String = signers
            .iter()
            .map(|(who, seed)| format!("{who} {}\n", key(*seed).public().to_openssh()))
            .collect();
        let replaces = replaces.map(|d| format!("replaces = \"{d}\"\n")).unwrap_or_default();
        format!(
            "version = {version}\n{replaces}required = {required}\nallowed_signers = \"\"\"\n{lines}\"\"\"\n"
        )
        .into_bytes()
    }

    fn approve(seed: u8, policy: &[u8]) -> (String, Vec<u8>) {
        let envelope = key(seed).sign_envelope(APPROVAL_PAYLOAD_TYPE, policy.to_vec());
        (format!("approval-{seed}.json"), envelope.to_json().into_bytes())
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_change_of_witnesses_needs_the_m_of_the_policy_it_replaces() {
        // Version 1: alice (two keys), bob, carol; 2 required. Version 2 drops carol, adds mallory.
        let v1 = policy(1, None, 2, &[("alice", 1), ("alice", 2), ("bob", 3), ("carol", 4)]);
        let v2 = policy(2, Some(&sha(&v1)), 2, &[("alice", 1), ("bob", 3), ("mallory", 9)]);
        let chain = vec![("v1.toml".to_string(), v1.clone()), ("v2.toml".to_string(), v2.clone())];
        let root = sha(&v1);

        let two_people = [approve(1, &v2), approve(3, &v2)];
        let now = in_force(&chain, &root, &two_people).unwrap();
        assert_eq!((now.version, now.required, now.witnesses.len()), (2, 2, 3));

        // Alice's two keys are one person; mallory is not a witness of version 1; a signature
        // over another file (version 1 itself) approves nothing.
        for approvals in [
            vec![approve(1, &v2), approve(2, &v2)],
            vec![approve(1, &v2), approve(9, &v2)],
            vec![approve(1, &v2), approve(3, &v1)],
        ] {
            let err = in_force(&chain, &root, &approvals).unwrap_err().to_string();
            assert!(err.contains("approved by 1 of the 2 witnesses of version 1 it needs (alice)"), "{err}");
        }
        // Deleting the approvals does not open the gate.
        let err = in_force(&chain, &root, &[]).unwrap_err().to_string();
        assert!(err.contains("approved by 0 of the 2"), "{err}");

        // The chain starts at the written-down digest and lists each version in order.
        let err = in_force(&chain[1..], &root, &two_people).unwrap_err().to_string();
        assert!(err.contains("not the root policy's"), "{err}");
        let v3_skipping = policy(3, Some(&sha(&v1)), 1, &[("mallory", 9)]);
        let skipping = vec![chain[0].clone(), ("v3.toml".to_string(), v3_skipping.clone())];
        let err = in_force(&skipping, &root, &[approve(1, &v3_skipping), approve(3, &v3_skipping)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not replace v1.toml"), "{err}");
        // Alone, the root is in force; unless the head written down says otherwise.
        assert_eq!(in_force(&chain[..1], &root, &[]).unwrap().version, 1);
        let err = in_force_at(&chain[..1], &root, &sha(&v2), &[]).unwrap_err().to_string();
        assert!(err.contains("not at the policy written down as in force"), "{err}");
        assert_eq!(in_force_at(&chain, &root, &sha(&v2), &two_people).unwrap().version, 2);

        // Two successors approved by the same M: a fork, neither in force.
        let v2_other = policy(2, Some(&sha(&v1)), 1, &[("mallory", 9)]);
        let mut forked = two_people.to_vec();
        forked.extend([approve(1, &v2_other), approve(3, &v2_other)]);
        let err = in_force(&chain, &root, &forked).unwrap_err().to_string();
        assert!(err.contains("the policy forked"), "{err}");
    }

    #[test]
    fn a_policy_file_is_checked_with_what_is_wrong() {
        let cases: [(Vec<u8>, &str); 5] = [
            (policy(1, None, 3, &[("alice", 1), ("alice", 2), ("bob", 3)]), "between 1 and the 2 witnesses"),
            (policy(2, None, 1, &[("alice", 1)]), "version 2 must name the policy it replaces"),
            (policy(1, Some(&"a".repeat(64)), 1, &[("alice", 1)]), "version 1 replaces nothing"),
            (policy(2, Some("abc"), 1, &[("alice", 1)]), "is not a SHA-256"),
            (b"version = 1\nrequired = 1\nallowed_signers = \"\"\nwho = 1\n".to_vec(), "unknown field `who`"),
        ];
        for (bytes, expected) in cases {
            let err = Policy::parse(&bytes, "p.toml").unwrap_err().to_string();
            assert!(err.starts_with("p.toml") && err.contains(expected), "{err}");
        }
    }
}
