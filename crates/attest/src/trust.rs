//! The witnesses a burn trusts, in OpenSSH's `allowed_signers` format (what `ssh-keygen -Y
//! verify` reads): `principals [options] key-type base64-key [comment]` per line. Only plain
//! `ssh-ed25519` keys are accepted; certificate authorities and other key types are refused
//! with their line, so nobody believes a witness is counted who is not. A witness is a person,
//! named by the principals field: several lines (keys) with one name are one witness, as
//! OpenSSH users list a laptop key and a token key. A `namespaces=` option must list
//! [`NAMESPACE`]: a key its owner restricted to git commits does not attest discs.

use crate::AttestError;
use crate::keys::PublicKey;

/// The namespace a `namespaces=` restriction must name for the key to attest ceremony discs.
pub const NAMESPACE: &str = "ceremony-os";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// The principals field as written (for example `alice@example.org`).
    pub name: String,
    pub key: PublicKey,
    pub line: usize,
}

/// Parse an allowed_signers text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Witness>, AttestError> {
    let mut witnesses: Vec<Witness> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| AttestError::Trust { origin: origin.to_string(), line, message };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = split_fields(trimmed);
        let (name, rest) = fields.split_first().ok_or_else(|| err("empty line".into()))?;
        // OpenSSH reads the principals field as a comma-separated list of patterns: a witness
        // here is one person, named plainly.
        if let Some(c) = name.chars().find(|c| ",*?!".contains(*c)) {
            return Err(err(format!(
                "principal {name:?} holds {c:?}: OpenSSH reads a list or a pattern there; name one witness per line"
            )));
        }
        // Options come before the key type; a key type never contains '=' or ','.
        let key_at = rest
            .iter()
            .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-") || f.starts_with("sk-"))
            .ok_or_else(|| err("no key (expected `principals [options] ssh-ed25519 AAAA...`)".into()))?;
        for option in &rest[..key_at] {
            let option_name = option.split('=').next().unwrap_or_default().to_ascii_lowercase();
            if option_name != "namespaces" {
                return Err(err(format!("option {option:?} is not supported (only namespaces=)")));
            }
            let listed = option.split_once('=').map(|(_, v)| v.trim_matches('"')).unwrap_or_default();
            if !listed.split(',').any(|n| n.trim() == NAMESPACE) {
                return Err(err(format!(
                    "{option} does not list {NAMESPACE}: its owner did not allow this key to attest ceremony discs"
                )));
            }
        }
        let key_type = &rest[key_at];
        if key_type != "ssh-ed25519" {
            return Err(err(format!(
                "key type {key_type} is not supported: witnesses sign with ssh-ed25519 keys"
            )));
        }
        let key = match rest.get(key_at + 1).map(|b| PublicKey::from_base64_blob(b)) {
            Some(Ok(Some(key))) => key,
            Some(Ok(None)) => return Err(err("the key blob is not an ssh-ed25519 key".into())),
            _ => return Err(err("the key is not base64".into())),
        };
        if let Some(other) = witnesses.iter().find(|w| w.key == key) {
            return Err(err(format!(
                "the same key as line {} ({}): one key is one witness",
                other.line, other.name
            )));
        }
        witnesses.push(Witness { name: name.to_string(), key, line });
    }
    Ok(witnesses)
}

/// Split on whitespace, keeping double-quoted runs (as in `namespaces="file,git"`) together.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    fields.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        fields.push(current);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::PUBLIC_KEY;

    #[test]
    fn witnesses_are_read_with_their_names() {
        let text = format!("# witnesses\nalice@example.org {PUBLIC_KEY} laptop\n\n");
        let witnesses = parse(&text, "allowed_signers").unwrap();
        assert_eq!(witnesses.len(), 1);
        assert_eq!((witnesses[0].name.as_str(), witnesses[0].line), ("alice@example.org", 2));
        assert_eq!(witnesses[0].key.to_openssh(), PUBLIC_KEY);
        let with_option = format!("bob namespaces=\"file,ceremony-os\" {PUBLIC_KEY}\n");
        assert_eq!(parse(&with_option, "a").unwrap()[0].name, "bob");
    }

    #[test]
    fn what_cannot_be_a_witness_is_refused_with_its_line() {
        for (text, expected) in [
            ("carol ssh-rsa AAAAB3NzaC1yc2E=".to_string(), "a:1: key type ssh-rsa is not supported"),
            (format!("dave cert-authority {PUBLIC_KEY}"), "a:1: option \"cert-authority\" is not supported"),
            ("erin ssh-ed25519 !!!".to_string(), "a:1: the key is not base64"),
            ("frank".to_string(), "a:1: no key"),
            (format!("a {PUBLIC_KEY}\nb {PUBLIC_KEY}"), "a:2: the same key as line 1"),
            (
                format!("grace namespaces=\"git\" {PUBLIC_KEY}"),
                "a:1: namespaces=\"git\" does not list ceremony-os",
            ),
            (format!("alice,alice@corp {PUBLIC_KEY}"), "a:1: principal \"alice,alice@corp\" holds ','"),
            (format!("*@example.org {PUBLIC_KEY}"), "a:1: principal \"*@example.org\" holds '*'"),
        ] {
            let err = parse(&text, "a").unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}
