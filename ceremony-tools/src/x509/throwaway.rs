//! A software key made for one lint and then dropped: it signs the to-be-signed bytes with the
//! HSM key's algorithm and size, so the complete certificate or CRL can be parsed, its signature
//! verified and the result linted before the HSM is asked for anything. Nothing it signs is
//! written anywhere.

use anyhow::{Result, anyhow};

use super::der;
use super::keys::KeyKind;

enum Key {
    Ecdsa(Box<ring::signature::EcdsaKeyPair>),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

pub struct Throwaway {
    kind: KeyKind,
    spki: Vec<u8>,
    key: Key,
}

impl Throwaway {
    /// A fresh key of the same kind as the HSM's.
    pub fn like(kind: KeyKind) -> Result<Throwaway> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let failed =
            |e: &dyn std::fmt::Display| anyhow!("making the throwaway {} key for the lint: {e}", kind.name());
        let (curve, algorithm) = match kind {
            KeyKind::EcP256 => (der::P256, &ECDSA_P256_SHA256_ASN1_SIGNING),
            KeyKind::EcP384 => (der::P384, &ECDSA_P384_SHA384_ASN1_SIGNING),
            KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 => {
                use rsa::traits::PublicKeyParts;
                let bits = match kind {
                    KeyKind::Rsa2048 => 2048,
                    KeyKind::Rsa3072 => 3072,
                    _ => 4096,
                };
                let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits).map_err(|e| failed(&e))?;
                let spki = der::rsa_spki(&private.n().to_bytes_be(), &private.e().to_bytes_be());
                let key = Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(private)));
                return Ok(Throwaway { kind, spki, key });
            }
        };
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(algorithm, &rng).map_err(|e| failed(&e))?;
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), &rng)
            .map_err(|e| failed(&e))?;
        let spki = der::ec_spki(curve, pair.public_key().as_ref());
        Ok(Throwaway { kind, spki, key: Key::Ecdsa(Box::new(pair)) })
    }
}

impl super::Signer for Throwaway {
    fn algorithm(&self) -> &'static [u64] {
        self.kind.signature_algorithm()
    }

    fn public_key_info(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match &self.key {
            Key::Ecdsa(pair) => pair
                .sign(&ring::rand::SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| anyhow!("the throwaway key did not sign: {e}")),
            Key::Rsa(key) => {
                use rsa::signature::{SignatureEncoding, Signer};
                Ok(key.sign(message).to_vec())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::Signer;

    #[test]
    fn each_kind_signs_what_its_public_key_verifies() {
        for kind in [KeyKind::EcP256, KeyKind::EcP384, KeyKind::Rsa2048] {
            let key = Throwaway::like(kind).unwrap();
            assert_eq!(crate::x509::keys::kind(key.public_key_info()).unwrap(), kind);
            // Any DER element stands for the to-be-signed bytes.
            let tbs = yasna::construct_der(|w| w.write_utf8_string("to be signed"));
            let signed = der::signed(&tbs, key.algorithm(), &key.sign(&tbs).unwrap());
            crate::x509::verify_signed(&signed, &tbs, key.public_key_info()).unwrap();
            let other = Throwaway::like(kind).unwrap();
            assert!(crate::x509::verify_signed(&signed, &tbs, other.public_key_info()).is_err(), "{kind:?}");
            let mut altered = signed.clone();
            let at = altered.windows(6).position(|w| w == b"signed").unwrap();
            altered[at] = b'S';
            let altered_tbs = yasna::construct_der(|w| w.write_utf8_string("to be Signed"));
            assert!(
                crate::x509::verify_signed(&altered, &altered_tbs, key.public_key_info()).is_err(),
                "{kind:?}"
            );
        }
    }
}
