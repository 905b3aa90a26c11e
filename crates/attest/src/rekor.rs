//! A witness's attestation in Sigstore's Rekor v2 log: the body of `POST /api/v2/log/entries`.
//! Rekor v2 takes only `hashedrekord` entries (its DSSE type was dropped in 2026-06), with a
//! public key (DER SubjectPublicKeyInfo) or a certificate as verifier, and only signatures over
//! a prehash (pure Ed25519 was removed). So the entry logs the envelope's pre-authentication
//! encoding (PAE, what its DSSE signature covers): its SHA-512, and an Ed25519ph signature of it
//! made with the witness's own key (`PKIX_ED25519_PH`). Nothing here talks to the network.

use crate::AttestError;
use crate::dsse::Envelope;
use crate::keys::{PublicKey, SigningKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha2::{Digest, Sha512};

/// The DER SubjectPublicKeyInfo of an ed25519 key (RFC 8410): the algorithm 1.3.101.112 and the
/// 32 key bytes.
pub fn ed25519_spki_der(key: &PublicKey) -> Vec<u8> {
    let raw = key.wire_blob();
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(&raw[raw.len() - 32..]);
    der
}

/// The request body that logs `envelope` (an attestation file's bytes) signed by `key`. The
/// envelope must hold exactly one signature, the key's: a witness logs their own attestation.
pub fn hashedrekord_request(envelope: &[u8], key: &SigningKey) -> Result<String, AttestError> {
    let parsed = Envelope::from_json(envelope)?;
    let [signature] = parsed.signatures.as_slice() else {
        return Err(AttestError::Malformed(format!(
            "the envelope holds {} signatures; a witness's attestation holds one",
            parsed.signatures.len()
        )));
    };
    let public = key.public();
    let pae = parsed.signed_bytes();
    if !public.verifies(&pae, &signature.sig) {
        return Err(AttestError::Malformed(format!(
            "the envelope's signature does not verify with {} (another witness's attestation, or an altered one)",
            public.keyid()
        )));
    }
    let body = json!({
        "hashedRekordRequestV002": {
            "digest": STANDARD.encode(Sha512::digest(&pae)),
            "signature": {
                "content": STANDARD.encode(key.sign_prehashed(&pae)),
                "verifier": {
                    "publicKey": {"rawBytes": STANDARD.encode(ed25519_spki_der(&public))},
                    "keyDetails": "PKIX_ED25519_PH",
                },
            },
        }
    });
    Ok(serde_json::to_string_pretty(&body).expect("a request serializes") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed(&[seed; 32])
    }

    /// Ed25519ph as RFC 8032 defines it: its test vector (section 7.3, "abc").
    #[test]
    fn ed25519ph_signs_the_rfc_8032_test_vector() {
        let seed: [u8; 32] = hex::decode("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_seed(&seed);
        assert_eq!(
            hex::encode(&key.public().wire_blob()[19..]),
            "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf"
        );
        let sig = key.sign_prehashed(b"abc");
        assert_eq!(
            hex::encode(&sig),
            "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
        );
        assert!(
            key.public().verifies_prehashed(b"abc", &sig) && !key.public().verifies_prehashed(b"abd", &sig)
        );
    }

    /// The request carries the SHA-512 of the envelope's PAE (checked with openssl), an
    /// Ed25519ph signature of it, and the key as DER (openssl reads it as an ED25519 key).
    #[test]
    fn the_request_logs_the_envelopes_pae_with_a_prehashed_signature() {
        let alice = key(7);
        let envelope = alice.sign_envelope("application/vnd.in-toto+json", b"{\"a\":1}".to_vec());
        let body = hashedrekord_request(envelope.to_json().as_bytes(), &alice).unwrap();
        let request: serde_json::Value = serde_json::from_str(&body).unwrap();
        let entry = &request["hashedRekordRequestV002"];
        assert_eq!(entry["signature"]["verifier"]["keyDetails"], "PKIX_ED25519_PH");
        let field = |v: &serde_json::Value| STANDARD.decode(v.as_str().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (pae, der) = (dir.path().join("pae"), dir.path().join("key.der"));
        std::fs::write(&pae, envelope.signed_bytes()).unwrap();
        std::fs::write(&der, field(&entry["signature"]["verifier"]["publicKey"]["rawBytes"])).unwrap();
        let sha512 = std::process::Command::new("openssl")
            .args(["dgst", "-sha512", "-binary"])
            .arg(&pae)
            .output()
            .unwrap();
        assert_eq!(field(&entry["digest"]), sha512.stdout);
        let read = std::process::Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(&der)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&read.stdout).contains("ED25519 Public-Key"), "{read:?}");
        assert!(
            alice
                .public()
                .verifies_prehashed(&envelope.signed_bytes(), &field(&entry["signature"]["content"]))
        );
        // Another witness's attestation, or an envelope signed twice, is refused.
        let err = hashedrekord_request(envelope.to_json().as_bytes(), &key(8)).unwrap_err();
        assert!(err.to_string().contains("does not verify with"), "{err}");
        let mut twice = envelope.clone();
        twice.signatures.push(twice.signatures[0].clone());
        let err = hashedrekord_request(twice.to_json().as_bytes(), &alice).unwrap_err();
        assert!(err.to_string().contains("holds 2 signatures"), "{err}");
    }
}
