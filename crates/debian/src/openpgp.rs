//! Checking a clearsigned file (an archive's `InRelease`) against an OpenPGP keyring, in-process
//! with rpgp: no gpgv, no host keyring, no agent. The check is cryptographic: a signature of the
//! file verifies with a key (a primary key, or a subkey with a valid binding) of the keyring,
//! with SHA-256 or stronger. Expiry and revocation are deliberately not checked, so an old archive
//! state still verifies years later with the keyring it was locked with (whose SHA-256 the lock
//! records).

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::SignatureType;

/// The signed text (dash-unescaped, LF line ends) if a signature verifies with the keyring.
pub fn verify_cleartext(signed: &[u8], keyring: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(signed).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let (declared, body) = declared_hashes(text)?;
    // The header is not signed and was checked above; rpgp is given the message without it
    // (it refuses some headers gpgv reads, such as "Hash: SHA512, SHA256").
    let (message, _) = CleartextSignedMessage::from_string(&format!("{BEGIN}\n\n{body}")).map_err(|e| {
        // rpgp's error quotes the whole input: a line is enough.
        format!("not a clearsigned file: {}", e.to_string().chars().take(200).collect::<String>())
    })?;
    let (keys, _) =
        SignedPublicKey::from_reader_many(keyring).map_err(|e| format!("the keyring cannot be read: {e}"))?;
    let keys: Vec<SignedPublicKey> =
        keys.collect::<Result<_, _>>().map_err(|e| format!("the keyring cannot be read: {e}"))?;
    if keys.is_empty() {
        return Err("the keyring holds no key".into());
    }
    let signed_text = message.signed_text();
    let strong =
        |alg| matches!(alg, Some(HashAlgorithm::Sha256 | HashAlgorithm::Sha384 | HashAlgorithm::Sha512));
    let mut undeclared = 0;
    for signature in message.signatures() {
        if !matches!(signature.typ(), Some(SignatureType::Text | SignatureType::Binary))
            || !strong(signature.hash_alg())
        {
            continue;
        }
        // gpgv (apt's verifier) fails a signature whose digest the armor header does not declare.
        if !signature.hash_alg().is_some_and(|alg| declared.contains(&alg)) {
            undeclared += 1;
            continue;
        }
        for key in &keys {
            if signature.verify(&key.primary_key, signed_text.as_bytes()).is_ok() {
                return Ok(signed_text.replace("\r\n", "\n"));
            }
            for sub in &key.public_subkeys {
                if sub.verify_bindings(&key.primary_key).is_ok()
                    && signature.verify(&sub.key, signed_text.as_bytes()).is_ok()
                {
                    return Ok(signed_text.replace("\r\n", "\n"));
                }
            }
        }
    }
    let undeclared = match undeclared {
        0 => String::new(),
        n => format!("; {n} of them use a digest the Hash: armor header does not declare"),
    };
    Err(format!(
        "no signature verifies with a key of the keyring ({} keys, {} signatures{undeclared})",
        keys.len(),
        message.signatures().len()
    ))
}

/// The digests the cleartext header declares (`Hash: SHA256` or `Hash: SHA512, SHA256`), read as
/// gpgv reads them: a header other than `Hash:` is refused, and without one gpgv assumes MD5, so
/// a file without it is refused too.
/// Returns them and the text after the header's blank line.
fn declared_hashes(text: &str) -> Result<(Vec<HashAlgorithm>, &str), String> {
    let Some(mut rest) =
        text.strip_prefix(BEGIN).and_then(|r| r.strip_prefix('\n').or(r.strip_prefix("\r\n")))
    else {
        return Err(format!("not a clearsigned file: it does not begin with {BEGIN}"));
    };
    let mut declared = Vec::new();
    loop {
        let (line, after) = rest.split_once('\n').ok_or("not a clearsigned file: its header does not end")?;
        rest = after;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(names) = line.strip_prefix("Hash:") else {
            return Err(format!(
                "armor header {:?}: a clearsigned file's header may only be Hash: (gpgv refuses it)",
                line.chars().take(80).collect::<String>()
            ));
        };
        for name in names.split(',').map(str::trim) {
            declared.push(match name {
                "SHA256" => HashAlgorithm::Sha256,
                "SHA384" => HashAlgorithm::Sha384,
                "SHA512" => HashAlgorithm::Sha512,
                other => {
                    return Err(format!(
                        "armor header Hash: {:?}: only SHA256, SHA384 or SHA512 are accepted",
                        other.chars().take(40).collect::<String>()
                    ));
                }
            });
        }
    }
    if declared.is_empty() {
        return Err("no Hash: armor header (gpgv takes that as MD5 and refuses the signature)".into());
    }
    Ok((declared, rest))
}

const BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";

#[cfg(test)]
mod tests {
    use super::*;

    const IN_RELEASE: &[u8] = include_bytes!("../tests/fixtures/bookworm-updates.InRelease");
    const KEYRING: &[u8] = include_bytes!("../../../image/keyring/debian-bookworm-archive.pgp");

    #[test]
    fn a_real_inrelease_verifies_with_the_project_keyring() {
        let text = verify_cleartext(IN_RELEASE, KEYRING).unwrap();
        assert!(text.starts_with("Origin: Debian\n"), "{}", &text[..100]);
        assert!(
            text.contains("\nSuite: oldstable-updates\n") || text.contains("\nCodename: bookworm-updates\n")
        );
        assert!(!text.contains("BEGIN PGP"), "only the signed text is returned");
    }

    #[test]
    fn an_altered_text_or_another_keyring_is_refused() {
        let mut altered = IN_RELEASE.to_vec();
        let at = altered.windows(8).position(|w| w == b"SHA256:\n").unwrap() + 9;
        altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
        assert!(verify_cleartext(&altered, KEYRING).unwrap_err().contains("no signature verifies"));
        let other = include_bytes!("../../../image/keyring/debian-bookworm-archive.pgp");
        // Only the stable release key (the last 280 bytes): it does not sign bookworm-updates.
        let stable_only = &other[other.len() - 280..];
        assert!(verify_cleartext(IN_RELEASE, stable_only).is_err());
        assert!(verify_cleartext(IN_RELEASE, b"").is_err());
        let unsigned = String::from_utf8_lossy(IN_RELEASE)
            .split("-----BEGIN PGP SIGNATURE-----")
            .next()
            .unwrap()
            .to_string();
        assert!(verify_cleartext(unsigned.as_bytes(), KEYRING).is_err());
    }

    /// The armor header must declare the digest the signature uses, as gpgv requires (run here
    /// as the oracle where it is installed: every Debian system has it).
    #[test]
    fn the_hash_armor_header_must_agree_with_the_signature() {
        let text = std::str::from_utf8(IN_RELEASE).unwrap();
        assert!(text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"));
        let with_header =
            |header: &str| text.replacen("\nHash: SHA256\n", &format!("\n{header}"), 1).into_bytes();
        let cases: [(&str, Option<&str>); 5] = [
            ("Hash: MD5\n", Some("only SHA256, SHA384 or SHA512")),
            ("Hash: SHA512\n", Some("2 of them use a digest the Hash: armor header does not declare")),
            ("Comment: hello\n", Some("may only be Hash:")),
            ("", Some("no Hash: armor header")),
            ("Hash: SHA512, SHA256\n", None),
        ];
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("keyring.pgp");
        std::fs::write(&keyring, KEYRING).unwrap();
        let gpgv = std::process::Command::new("gpgv").arg("--version").output().is_ok();
        for (header, refusal) in cases {
            let signed = with_header(header);
            let ours = verify_cleartext(&signed, KEYRING);
            match refusal {
                Some(message) => {
                    let err = ours.unwrap_err();
                    assert!(err.contains(message), "{header:?}: {err}");
                }
                None => assert!(ours.is_ok(), "{header:?}: {ours:?}"),
            }
            if gpgv {
                let file = dir.path().join("InRelease");
                std::fs::write(&file, &signed).unwrap();
                let out = std::process::Command::new("gpgv")
                    .arg("--keyring")
                    .arg(&keyring)
                    .arg(&file)
                    .output()
                    .unwrap();
                let good = String::from_utf8_lossy(&out.stderr).contains("Good signature");
                assert_eq!(
                    good,
                    refusal.is_none(),
                    "gpgv on {header:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
