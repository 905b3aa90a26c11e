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
    let (message, _) =
        CleartextSignedMessage::from_string(text).map_err(|e| format!("not a clearsigned file: {e}"))?;
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
    for signature in message.signatures() {
        if !matches!(signature.typ(), Some(SignatureType::Text | SignatureType::Binary))
            || !strong(signature.hash_alg())
        {
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
    Err(format!(
        "no signature verifies with a key of the keyring ({} keys, {} signatures)",
        keys.len(),
        message.signatures().len()
    ))
}

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
}
