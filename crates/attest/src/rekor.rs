//! A witness's attestation as a Rekor v2 log entry: the request body of `POST
//! /api/v2/log/entries` for a `dsse` entry (the envelope as it is, and the witness's ed25519 key as
//! a DER SubjectPublicKeyInfo, key details `PKIX_ED25519`). Rekor v2 takes only public keys and
//! certificates as verifiers (v1's `--pki-format=ssh` is gone with v1, which is in maintenance);
//! nothing here talks to the network: the witness posts the body with any HTTP client.

use crate::AttestError;
use crate::dsse::Envelope;
use crate::keys::PublicKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

/// The DER SubjectPublicKeyInfo of an ed25519 key (RFC 8410): the algorithm 1.3.101.112 and the
/// 32 key bytes.
pub fn ed25519_spki_der(key: &PublicKey) -> Vec<u8> {
    let raw = key.wire_blob();
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(&raw[raw.len() - 32..]);
    der
}

/// The request body that logs `envelope` (an attestation file's bytes) with `key` as its
/// verifier. The envelope must hold exactly one signature, and it must verify with the key: a
/// log entry that its own verifier refutes is refused here, not by the log.
pub fn dsse_entry_request(envelope: &[u8], key: &PublicKey) -> Result<String, AttestError> {
    let parsed = Envelope::from_json(envelope)?;
    let [signature] = parsed.signatures.as_slice() else {
        return Err(AttestError::Malformed(format!(
            "the envelope holds {} signatures; a witness's attestation holds one",
            parsed.signatures.len()
        )));
    };
    if !key.verifies(&parsed.signed_bytes(), &signature.sig) {
        return Err(AttestError::Malformed(format!(
            "the envelope's signature does not verify with {} (another witness's key, or an altered envelope)",
            key.keyid()
        )));
    }
    let envelope: serde_json::Value = serde_json::from_slice(envelope)
        .map_err(|e| AttestError::Malformed(format!("not a DSSE envelope: {e}")))?;
    let body = json!({
        "dsseRequestV0_0_2": {
            "envelope": envelope,
            "verifiers": [{
                "publicKey": {"rawBytes": STANDARD.encode(ed25519_spki_der(key))},
                "keyDetails": "PKIX_ED25519",
            }],
        }
    });
    Ok(serde_json::to_string_pretty(&body).expect("a request serializes") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn key(seed: u8) -> SigningKey {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        der.extend([seed; 32]);
        let pem =
            format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der));
        SigningKey::from_bytes(pem.as_bytes(), "test").unwrap()
    }

    /// openssl, the oracle, reads the DER key and verifies the envelope's signature over the PAE
    /// with it: what Rekor's verifier does with the entry.
    #[test]
    fn the_request_carries_a_key_openssl_verifies_the_envelope_with() {
        let alice = key(7);
        let envelope = alice.sign_envelope("application/vnd.in-toto+json", b"{\"a\":1}".to_vec());
        let body = dsse_entry_request(envelope.to_json().as_bytes(), &alice.public()).unwrap();
        let request: serde_json::Value = serde_json::from_str(&body).unwrap();
        let entry = &request["dsseRequestV0_0_2"];
        assert_eq!(entry["envelope"]["payloadType"], "application/vnd.in-toto+json");
        assert_eq!(entry["verifiers"][0]["keyDetails"], "PKIX_ED25519");
        let der = STANDARD.decode(entry["verifiers"][0]["publicKey"]["rawBytes"].as_str().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (key_file, pae, sig) = (dir.path().join("k.der"), dir.path().join("pae"), dir.path().join("sig"));
        std::fs::write(&key_file, &der).unwrap();
        std::fs::write(&pae, envelope.signed_bytes()).unwrap();
        std::fs::write(&sig, &envelope.signatures[0].sig).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-rawin", "-inkey"])
            .arg(&key_file)
            .arg("-in")
            .arg(&pae)
            .arg("-sigfile")
            .arg(&sig)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"));
        // Another witness's key, or an envelope signed twice, is refused before any request.
        let err = dsse_entry_request(envelope.to_json().as_bytes(), &key(8).public()).unwrap_err();
        assert!(err.to_string().contains("does not verify with"), "{err}");
        let mut twice = envelope.clone();
        twice.signatures.push(twice.signatures[0].clone());
        let err = dsse_entry_request(twice.to_json().as_bytes(), &alice.public()).unwrap_err();
        assert!(err.to_string().contains("holds 2 signatures"), "{err}");
    }
}
