//! Certificates signed inside the HSM. rcgen builds the to-be-signed certificate; the signature
//! comes from the token through [`HsmSigner`]. Profile rules are checked before signing; after
//! signing the certificate is parsed again, its signature verified with the HSM's public key, and
//! its fields linted against what was asked for.

use crate::config::KeyType;
use crate::hsm;
use anyhow::{Context, Result, anyhow, bail};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use sha2::{Digest, Sha256, Sha384};

/// A private key in the token, with its public half read back.
pub struct HsmSigner<'a> {
    session: &'a Session,
    private: ObjectHandle,
    key_type: KeyType,
    /// RSAPublicKey DER, or the uncompressed EC point: what rcgen puts in the BIT STRING.
    public_bits: Vec<u8>,
    pub spki: Vec<u8>,
}

impl std::fmt::Debug for HsmSigner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HsmSigner({:?})", self.key_type)
    }
}

impl PublicKeyData for HsmSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public_bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.key_type {
            KeyType::Rsa3072 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

impl SigningKey for HsmSigner<'_> {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signed = match self.key_type {
            KeyType::Rsa3072 | KeyType::Rsa4096 => {
                self.session.sign(&Mechanism::Sha256RsaPkcs, self.private, message)
            }
            KeyType::EcP256 => self.session.sign(&Mechanism::Ecdsa, self.private, &Sha256::digest(message)),
            KeyType::EcP384 => self.session.sign(&Mechanism::Ecdsa, self.private, &Sha384::digest(message)),
        };
        let raw = signed.map_err(|e| {
            eprintln!("the HSM refused to sign: {e}");
            rcgen::Error::RemoteKeyError
        })?;
        Ok(match self.key_type {
            // PKCS#11 returns r || s; X.509 wants an ECDSA-Sig-Value SEQUENCE.
            KeyType::EcP256 | KeyType::EcP384 => ecdsa_der(&raw),
            _ => raw,
        })
    }
}

fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    let int = |v: &[u8]| {
        let mut c: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        if c.is_empty() || c[0] & 0x80 != 0 {
            c.insert(0, 0);
        }
        crate::der::tlv(0x02, &c)
    };
    crate::der::tlv(0x30, &[int(r), int(s)].concat())
}

/// Find the signing key by label: exactly one private key, and its public key (same label and
/// CKA_ID). With `expected_spki`, the public key must also match it (the issuer certificate's).
pub fn find_signer<'a>(
    session: &'a Session,
    label: &str,
    expected_spki: Option<&[u8]>,
) -> Result<HsmSigner<'a>> {
    let by = |class: ObjectClass| {
        session.find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())])
    };
    let privates = by(ObjectClass::PRIVATE_KEY)?;
    let [private] = privates.as_slice() else {
        bail!("{} private keys are labelled {label:?}; exactly one must be", privates.len());
    };
    let publics = by(ObjectClass::PUBLIC_KEY)?;
    let [public] = publics.as_slice() else {
        bail!("{} public keys are labelled {label:?}; exactly one must be", publics.len());
    };
    let key_type = detect_key_type(session, *public)?;
    let spki = hsm::public_key_info(session, *public, key_type)?;
    if let Some(expected) = expected_spki
        && expected != spki.as_slice()
    {
        bail!("the key labelled {label:?} does not match the issuer certificate's public key");
    }
    let public_bits = spki_bits(&spki)?;
    Ok(HsmSigner { session, private: *private, key_type, public_bits, spki })
}

fn detect_key_type(session: &Session, public: ObjectHandle) -> Result<KeyType> {
    let attributes = session.get_attributes(
        public,
        &[AttributeType::KeyType, AttributeType::ModulusBits, AttributeType::EcParams],
    )?;
    let mut kind = None;
    let mut bits = 0u64;
    let mut params = Vec::new();
    for a in attributes {
        match a {
            Attribute::KeyType(k) => kind = Some(k),
            Attribute::ModulusBits(b) => bits = b.into(),
            Attribute::EcParams(p) => params = p,
            _ => {}
        }
    }
    match kind {
        Some(CkKeyType::RSA) if bits == 3072 => Ok(KeyType::Rsa3072),
        Some(CkKeyType::RSA) if bits == 4096 => Ok(KeyType::Rsa4096),
        Some(CkKeyType::EC) if params == crate::der::named_curve(crate::der::OID_P256) => Ok(KeyType::EcP256),
        Some(CkKeyType::EC) if params == crate::der::named_curve(crate::der::OID_P384) => Ok(KeyType::EcP384),
        _ => bail!("the key is neither RSA 3072/4096 nor EC P-256/P-384"),
    }
}

/// The subjectPublicKey BIT STRING's content (without the unused-bits byte) of an SPKI.
fn spki_bits(spki: &[u8]) -> Result<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (_, info) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).map_err(|e| anyhow!("bad SPKI: {e}"))?;
    Ok(info.subject_public_key.data.to_vec())
}

/// A serial number from the HSM's RNG: 20 bytes, positive, never zero.
pub fn random_serial(session: &Session) -> Result<Vec<u8>> {
    let mut serial = session.generate_random_vec(20).context("the HSM's random number generator failed")?;
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 0x01;
    }
    Ok(serial)
}

/// RFC 7093 method 1 style key identifier: the first 20 bytes of SHA-256 of the subjectPublicKey.
pub fn key_identifier(spki: &[u8]) -> Result<Vec<u8>> {
    Ok(Sha256::digest(spki_bits(spki)?)[..20].to_vec())
}

/// After signing: parse, verify the signature with the signer's public key, and lint.
pub fn check_issued(der: &[u8], issuer_spki: &[u8], expect: &Expectations) -> Result<()> {
    use x509_parser::prelude::*;
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| anyhow!("the signed certificate does not parse: {e}"))?;
    if !rest.is_empty() {
        bail!("trailing bytes after the signed certificate");
    }
    let (_, issuer_key) = SubjectPublicKeyInfo::from_der(issuer_spki).map_err(|e| anyhow!("{e}"))?;
    cert.verify_signature(Some(&issuer_key))
        .map_err(|e| anyhow!("the signature does not verify with the HSM's public key: {e}"))?;
    if cert.version() != X509Version::V3 {
        bail!("not an X.509 v3 certificate");
    }
    if cert.raw_serial() != expect.serial.as_slice() {
        bail!("the serial number is not the one drawn from the HSM");
    }
    if cert.validity().not_before.timestamp() != expect.not_before
        || cert.validity().not_after.timestamp() != expect.not_after
    {
        bail!("the validity is not the one asked for");
    }
    let constraints = cert
        .basic_constraints()
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("no basicConstraints"))?;
    if !constraints.critical
        || !constraints.value.ca
        || constraints.value.path_len_constraint != expect.path_len
    {
        bail!("basicConstraints is not critical CA:TRUE with the expected path length");
    }
    let usage = cert.key_usage().map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("no keyUsage"))?;
    if !usage.critical
        || !usage.value.key_cert_sign()
        || !usage.value.crl_sign()
        || usage.value.digital_signature()
    {
        bail!("keyUsage is not critical keyCertSign + cRLSign");
    }
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no subjectKeyIdentifier"))?;
    if ski != expect.subject_key_id {
        bail!("the subjectKeyIdentifier is not the subject key's");
    }
    Ok(())
}

/// What `check_issued` compares the certificate with.
#[derive(Debug)]
pub struct Expectations {
    pub serial: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub path_len: Option<u32>,
    pub subject_key_id: Vec<u8>,
}

/// An issuer's certificate, read (and its validity known) before the HSM is touched.
#[derive(Debug)]
pub struct IssuerCertificate {
    pub der: Vec<u8>,
    /// Its SubjectPublicKeyInfo: the signing key in the HSM must match it.
    pub spki: Vec<u8>,
    /// Its subject name, DER: the issuer name of what it signs.
    pub subject: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
}

impl IssuerCertificate {
    pub fn load(path: &std::path::Path) -> Result<Self> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let der = read_pem(path, "CERTIFICATE")?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(IssuerCertificate {
            spki: cert.public_key().raw.to_vec(),
            subject: cert.subject().as_raw().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            der,
        })
    }

    /// rcgen's issuer: this certificate's name and key identifier, signing in the HSM.
    pub fn issuer<'a>(&self, signer: &'a HsmSigner<'a>) -> Result<rcgen::Issuer<'static, &'a HsmSigner<'a>>> {
        rcgen::Issuer::from_ca_cert_der(&self.der.clone().into(), signer)
            .map_err(|e| anyhow!("the issuer certificate: {e}"))
    }
}

/// The DER inside a PEM file, checking its label.
pub fn read_pem(path: &std::path::Path, label: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| anyhow!("{}: not PEM: {e}", path.display()))?;
    if pem.label != label {
        bail!("{}: a PEM {:?}, expected {label:?}", path.display(), pem.label);
    }
    Ok(pem.contents)
}

/// The subject of a CSR as an rcgen name. Only the usual attributes are accepted.
pub fn subject_from_csr(name: &x509_parser::x509::X509Name<'_>) -> Result<rcgen::DistinguishedName> {
    use x509_parser::oid_registry as oids;
    let mut out = rcgen::DistinguishedName::new();
    for attribute in name.iter_attributes() {
        let value =
            attribute.as_str().map_err(|_| anyhow!("a subject attribute is not a string"))?.to_string();
        let oid = attribute.attr_type();
        let kind = if *oid == oids::OID_X509_COMMON_NAME {
            rcgen::DnType::CommonName
        } else if *oid == oids::OID_X509_ORGANIZATION_NAME {
            rcgen::DnType::OrganizationName
        } else if *oid == oids::OID_X509_ORGANIZATIONAL_UNIT {
            rcgen::DnType::OrganizationalUnitName
        } else if *oid == oids::OID_X509_COUNTRY_NAME {
            rcgen::DnType::CountryName
        } else if *oid == oids::OID_X509_LOCALITY_NAME {
            rcgen::DnType::LocalityName
        } else if *oid == oids::OID_X509_STATE_OR_PROVINCE_NAME {
            rcgen::DnType::StateOrProvinceName
        } else {
            bail!("the CSR's subject has attribute {oid}, which the profile does not allow");
        };
        out.push(kind, value);
    }
    Ok(out)
}

/// An Authority Information Access extension with one caIssuers URI (RFC 5280 4.2.2.1).
pub fn authority_info_access(uri: &str) -> rcgen::CustomExtension {
    use crate::der::tlv;
    let ca_issuers = tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02]);
    let location = tlv(0x86, uri.as_bytes());
    let content = tlv(0x30, &tlv(0x30, &[ca_issuers, location].concat()));
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], content)
}

/// After signing a CRL: parse it, verify its signature with the issuer's key, check its entries.
pub fn check_crl(der: &[u8], issuer_spki: &[u8], serials: &[Vec<u8>]) -> Result<()> {
    use x509_parser::prelude::*;
    let (_, crl) = CertificateRevocationList::from_der(der)
        .map_err(|e| anyhow!("the signed CRL does not parse: {e}"))?;
    let (_, issuer_key) = SubjectPublicKeyInfo::from_der(issuer_spki).map_err(|e| anyhow!("{e}"))?;
    crl.verify_signature(&issuer_key)
        .map_err(|e| anyhow!("the CRL's signature does not verify with the HSM's public key: {e}"))?;
    let listed: Vec<Vec<u8>> = crl.iter_revoked_certificates().map(|r| r.raw_serial().to_vec()).collect();
    if listed != serials {
        bail!("the CRL lists other serials than asked for");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ecdsa_der;

    #[test]
    fn raw_ecdsa_signatures_become_der() {
        let mut raw = vec![0x80; 32];
        raw.extend(vec![0x01; 32]);
        let der = ecdsa_der(&raw);
        assert_eq!(&der[..4], [0x30, 69, 0x02, 33]);
        assert_eq!(der[4], 0x00, "a high bit gets a leading zero");
        assert_eq!(&der[37..39], [0x02, 32]);
    }
}
