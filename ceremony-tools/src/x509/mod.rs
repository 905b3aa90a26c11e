//! X.509 for the ceremony: DER built field by field (`der`), the issuer certificate's checks
//! (`issuer`), the key policy (`keys`), the linter (`lint`), and names from step files.
//!
//! Every certificate, CRL and CSR goes through [`sign_checked`]: the to-be-signed bytes are
//! signed with a throwaway software key, verified and linted before the HSM is asked for
//! anything, then signed in the HSM, verified with the HSM's public key and linted again.

pub mod der;
pub mod issuer;
pub mod keys;
pub mod lint;
mod throwaway;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

/// A subject from a step file: what a CA names itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectSection {
    pub common_name: String,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub organizational_unit: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    /// ISO 3166 alpha-2, such as "CH".
    #[serde(default)]
    pub country: Option<String>,
}

impl SubjectSection {
    /// The Name's DER, after checking every value (RFC 5280 upper bounds, country code).
    pub fn to_der(&self) -> Result<Vec<u8>> {
        use der::NameAttribute as A;
        let mut attributes = Vec::new();
        if let Some(country) = &self.country {
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                bail!(
                    "subject.country {country:?} is not a two-letter ISO 3166 code in capitals, such as \"CH\""
                );
            }
            attributes.push((A::Country, country.clone()));
        }
        for (attribute, field, value, max) in [
            (A::State, "state", &self.state, 128),
            (A::Locality, "locality", &self.locality, 128),
            (A::Organization, "organization", &self.organization, 64),
            (A::OrganizationalUnit, "organizational_unit", &self.organizational_unit, 64),
        ] {
            if let Some(value) = value {
                check_value(field, value, max)?;
                attributes.push((attribute, value.clone()));
            }
        }
        check_value("common_name", &self.common_name, 64)?;
        attributes.push((A::CommonName, self.common_name.clone()));
        Ok(der::name(&attributes))
    }
}

fn check_value(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        bail!("subject.{field} is empty");
    }
    if value.chars().count() > max {
        bail!("subject.{field} has {} characters; RFC 5280 allows at most {max}", value.chars().count());
    }
    if value.chars().any(char::is_control) {
        bail!("subject.{field} holds a control character");
    }
    Ok(())
}

/// Big-endian bytes without leading zeros.
pub fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// A serial typed by a person or printed by openssl (`8a01`, `0x8A01`, `8A:01`, `00:8a:01`):
/// its unsigned big-endian magnitude. Refused when empty, zero, not hex, or over 20 octets.
pub fn parse_serial(text: &str) -> Result<Vec<u8>> {
    let cleaned: String =
        text.trim().trim_start_matches("0x").trim_start_matches("0X").chars().filter(|c| *c != ':').collect();
    let padded = if cleaned.len() % 2 == 1 { format!("0{cleaned}") } else { cleaned };
    let bytes = hex::decode(&padded).map_err(|_| anyhow!("serial {text:?} is not hexadecimal"))?;
    let magnitude = strip_zeros(&bytes).to_vec();
    if magnitude.is_empty() {
        bail!("serial {text:?} is zero");
    }
    if magnitude.len() > 20 {
        bail!("serial {text:?} is longer than 20 octets");
    }
    Ok(magnitude)
}

/// What signs: the algorithm it signs with and the signature over some bytes (the HSM).
pub trait Signer {
    fn algorithm(&self) -> &'static [u64];
    fn public_key_info(&self) -> &[u8];
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
}

/// Sign `tbs` three times over: first with a throwaway software key of the HSM key's kind (the
/// complete object is verified with that key and linted before the HSM is asked for anything),
/// then in the HSM, whose result is verified with the HSM's public key and linted again.
/// `lint` gets the whole signed object.
pub fn sign_checked(
    tbs: &[u8],
    signer: &dyn Signer,
    lint: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<Vec<u8>> {
    let kind = keys::kind(signer.public_key_info())?;
    let rehearsal = sign_and_verify(tbs, &throwaway::Throwaway::like(kind)?)
        .map_err(|e| anyhow!("before signing, with a throwaway key: {e}"))?;
    lint(&rehearsal).map_err(|e| anyhow!("before signing, {e}"))?;
    let signed = sign_and_verify(tbs, signer).map_err(|e| anyhow!("after signing in the HSM: {e}"))?;
    lint(&signed).map_err(|e| anyhow!("after signing in the HSM, {e}"))?;
    Ok(signed)
}

fn sign_and_verify(tbs: &[u8], signer: &dyn Signer) -> Result<Vec<u8>> {
    let signed = der::signed(tbs, signer.algorithm(), &signer.sign(tbs)?);
    verify_signed(&signed, tbs, signer.public_key_info()).map_err(|e| anyhow!(e))?;
    Ok(signed)
}

/// Check a signed object (certificate, CRL or CSR: SEQUENCE { tbs, algorithm, BIT STRING })
/// holds exactly `tbs` and a signature over it that `spki` verifies.
pub fn verify_signed(signed: &[u8], tbs: &[u8], spki: &[u8]) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};
    let (inner, algorithm, signature) = yasna::parse_der(signed, |r| {
        r.read_sequence(|r| {
            let inner = r.next().read_der()?;
            let algorithm = r.next().read_der()?;
            let (signature, bits) = r.next().read_bitvec_bytes()?;
            Ok((inner, algorithm, (signature, bits)))
        })
    })
    .map_err(|e| format!("the signed object does not parse: {e}"))?;
    if inner != tbs || signature.1 != signature.0.len() * 8 {
        return Err("the signed object does not hold the bytes that were signed".into());
    }
    let (_, algorithm) = AlgorithmIdentifier::from_der(&algorithm).map_err(|e| e.to_string())?;
    let (_, key) = SubjectPublicKeyInfo::from_der(spki).map_err(|e| e.to_string())?;
    let signature = asn1_rs::BitString::new(0, &signature.0);
    x509_parser::verify::verify_signature(&key, &algorithm, &signature, tbs)
        .map_err(|e| format!("the signature does not verify with the signer's public key ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_as_people_and_openssl_write_them() {
        assert_eq!(parse_serial("8a01").unwrap(), [0x8a, 0x01]);
        assert_eq!(parse_serial("0x8A01").unwrap(), [0x8a, 0x01]);
        assert_eq!(parse_serial("00:8A:01").unwrap(), [0x8a, 0x01]);
        assert_eq!(parse_serial("a01").unwrap(), [0x0a, 0x01]);
        assert!(parse_serial("0").is_err());
        assert!(parse_serial("xyz").is_err());
        assert!(parse_serial(&"01".repeat(21)).is_err());
    }

    #[test]
    fn subject_values_are_checked() {
        let subject = |country: &str, cn: &str| SubjectSection {
            common_name: cn.into(),
            organization: None,
            organizational_unit: None,
            locality: None,
            state: None,
            country: Some(country.into()),
        };
        assert!(subject("CH", "Root").to_der().is_ok());
        assert!(subject("Switzerland", "Root").to_der().unwrap_err().to_string().contains("two-letter"));
        assert!(subject("ch", "Root").to_der().is_err());
        assert!(subject("CH", "  ").to_der().unwrap_err().to_string().contains("common_name is empty"));
        assert!(subject("CH", &"x".repeat(65)).to_der().unwrap_err().to_string().contains("at most 64"));
    }
}
