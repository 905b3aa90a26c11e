//! Public keys as a CA judges them: what kind a SubjectPublicKeyInfo holds, the key policy a
//! profile applies to keys it certifies (RSA 2048/3072/4096 with exponent 65537, ECDSA P-256 and
//! P-384; nothing else), and key identifiers (RFC 7093 method 1: SHA-256 of the subjectPublicKey,
//! first 160 bits).

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyKind {
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "ec-p256")]
    EcP256,
    #[serde(rename = "ec-p384")]
    EcP384,
}

impl KeyKind {
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa2048 => "rsa-2048",
            KeyKind::Rsa3072 => "rsa-3072",
            KeyKind::Rsa4096 => "rsa-4096",
            KeyKind::EcP256 => "ec-p256",
            KeyKind::EcP384 => "ec-p384",
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096)
    }

    /// The signature algorithm a key of this kind signs with.
    pub fn signature_algorithm(self) -> &'static [u64] {
        match self {
            KeyKind::EcP256 => super::der::ECDSA_WITH_SHA256,
            KeyKind::EcP384 => super::der::ECDSA_WITH_SHA384,
            _ => super::der::SHA256_WITH_RSA,
        }
    }
}

/// The default policy: every kind above.
pub fn default_allowed() -> Vec<KeyKind> {
    vec![KeyKind::Rsa2048, KeyKind::Rsa3072, KeyKind::Rsa4096, KeyKind::EcP256, KeyKind::EcP384]
}

/// The kind of key an SPKI holds, or why it is none of the allowed ones.
pub fn kind(spki: &[u8]) -> Result<KeyKind> {
    let (rest, info) =
        SubjectPublicKeyInfo::from_der(spki).map_err(|e| anyhow!("not a SubjectPublicKeyInfo: {e}"))?;
    if !rest.is_empty() {
        bail!("trailing bytes after the SubjectPublicKeyInfo");
    }
    match info.parsed().map_err(|e| anyhow!("the public key does not parse: {e}"))? {
        PublicKey::RSA(rsa) => {
            let modulus: Vec<u8> = rsa.modulus.iter().copied().skip_while(|b| *b == 0).collect();
            let bits = modulus.len() * 8 - modulus.first().map_or(8, |b| b.leading_zeros() as usize);
            let exponent: Vec<u8> = rsa.exponent.iter().copied().skip_while(|b| *b == 0).collect();
            if exponent != [1, 0, 1] {
                bail!("an RSA key with public exponent 0x{}; only 65537 is allowed", hex::encode(&exponent));
            }
            match bits {
                2048 => Ok(KeyKind::Rsa2048),
                3072 => Ok(KeyKind::Rsa3072),
                4096 => Ok(KeyKind::Rsa4096),
                other => bail!("an RSA key of {other} bits; only 2048, 3072 and 4096 are allowed"),
            }
        }
        PublicKey::EC(point) => {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let data = point.data();
            match (curve.as_str(), data.len(), data.first()) {
                ("1.2.840.10045.3.1.7", 65, Some(4)) => Ok(KeyKind::EcP256),
                ("1.3.132.0.34", 97, Some(4)) => Ok(KeyKind::EcP384),
                (curve, _, _) => bail!(
                    "an EC key on curve {curve} (or not an uncompressed point); only P-256 and P-384 are allowed"
                ),
            }
        }
        _ => bail!("a {} key; only RSA and ECDSA (P-256, P-384) keys are allowed", info.algorithm.algorithm),
    }
}

/// The key's kind, if the policy allows it.
pub fn check(spki: &[u8], allowed: &[KeyKind]) -> Result<KeyKind> {
    let kind = kind(spki)?;
    if !allowed.contains(&kind) {
        let names: Vec<&str> = allowed.iter().map(|k| k.name()).collect();
        bail!("a {} key, which the profile does not allow (allowed: {})", kind.name(), names.join(", "));
    }
    Ok(kind)
}

/// RFC 7093 method 1: the first 160 bits of SHA-256 of the subjectPublicKey BIT STRING's value.
pub fn key_identifier(spki: &[u8]) -> Result<Vec<u8>> {
    let (_, info) =
        SubjectPublicKeyInfo::from_der(spki).map_err(|e| anyhow!("not a SubjectPublicKeyInfo: {e}"))?;
    Ok(Sha256::digest(&info.subject_public_key.data)[..20].to_vec())
}
