//! The ceremony tool's own linter: the RFC 5280 rules a CA certificate or CRL it makes must meet,
//! and what the step asked for. It runs twice on every certificate and CRL: on the to-be-signed
//! object (signed by a throwaway software key, before the HSM is used) and on the object the HSM
//! signed. It parses with x509-parser, and reads the raw encodings where RFC 5280 fixes them
//! (countryName as PrintableString, UTCTime before 2050).
//!
//! What it checks (each finding names the rule):
//! - structure: v3 certificate / v2 CRL, nothing after it, the signature algorithm inside equal
//!   to the one outside;
//! - serial numbers: positive, non-zero, at most 20 octets; CRL entries unique;
//! - names: non-empty subject; countryName two capital letters as PrintableString; other
//!   attributes UTF8String or PrintableString, non-empty, within RFC 5280's upper bounds; the
//!   issuer name equal, byte for byte, to the issuer certificate's subject;
//! - times: notBefore < notAfter (thisUpdate < nextUpdate), UTCTime through 2049 and
//!   GeneralizedTime from 2050, equal to what the step asked for;
//! - extensions: none twice; basicConstraints critical with cA TRUE and the profile's path length;
//!   keyUsage critical with keyCertSign and cRLSign; subjectKeyIdentifier present and as
//!   expected; authorityKeyIdentifier's keyIdentifier equal to the issuer's subject key
//!   identifier; CRL distribution point and caIssuers URIs well-formed http URIs; for a CRL, a
//!   crlNumber;
//! - the subject public key allowed by the profile's key policy.

use super::keys::{self, KeyKind};
use std::collections::BTreeSet;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::*;

/// What a certificate must be.
#[derive(Debug)]
pub struct CertificateRules<'a> {
    pub serial: &'a [u8],
    pub issuer_name: &'a [u8],
    pub issuer_key_id: &'a [u8],
    pub subject_key_id: &'a [u8],
    pub path_len: Option<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub allowed_keys: &'a [KeyKind],
}

/// What a CRL must be.
#[derive(Debug)]
pub struct CrlRules<'a> {
    pub issuer_name: &'a [u8],
    pub issuer_key_id: &'a [u8],
    pub this_update: i64,
    pub next_update: i64,
    pub number: u64,
    /// Unsigned big-endian serials, in order.
    pub serials: &'a [Vec<u8>],
}

/// Findings collected while checking.
#[derive(Debug, Default)]
struct Findings(Vec<String>);

impl Findings {
    fn rule(&mut self, ok: bool, rule: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(format!("[{rule}] {}", message()));
        }
    }

    fn into_result(self, what: &str) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{what} fails the lint:\n  {}", self.0.join("\n  ")))
        }
    }
}

/// Upper bounds of RFC 5280 appendix A.1.
fn upper_bound(oid: &str) -> usize {
    match oid {
        "2.5.4.3" | "2.5.4.10" | "2.5.4.11" => 64,
        "2.5.4.7" | "2.5.4.8" => 128,
        _ => 256,
    }
}

fn lint_name(f: &mut Findings, name: &X509Name<'_>, which: &str) {
    f.rule(name.iter_attributes().next().is_some(), "name.empty", || format!("the {which} name is empty"));
    for attribute in name.iter_attributes() {
        let oid = attribute.attr_type().to_id_string();
        let value = attribute.attr_value();
        let text = attribute.as_str().unwrap_or("");
        if oid == "2.5.4.6" {
            f.rule(value.tag() == Tag::PrintableString, "name.country.encoding", || {
                format!("{which} countryName is {:?}, RFC 5280 requires PrintableString", value.tag())
            });
            f.rule(
                text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase()),
                "name.country.value",
                || format!("{which} countryName {text:?} is not two capital letters (ISO 3166)"),
            );
        } else {
            f.rule(matches!(value.tag(), Tag::Utf8String | Tag::PrintableString), "name.encoding", || {
                format!("{which} attribute {oid} is {:?}, not UTF8String or PrintableString", value.tag())
            });
            f.rule(!text.trim().is_empty(), "name.value.empty", || {
                format!("{which} attribute {oid} is empty")
            });
            f.rule(text.chars().count() <= upper_bound(&oid), "name.value.length", || {
                format!("{which} attribute {oid} is longer than {} characters", upper_bound(&oid))
            });
        }
    }
}

/// The raw tags of a TBS element list, by position: used for the time encodings.
fn time_tags(tbs_raw: &[u8], certificate: bool) -> Vec<u8> {
    let result = yasna::parse_der(tbs_raw, |r| {
        r.read_sequence(|r| {
            let mut tags = Vec::new();
            if certificate {
                r.next().read_der()?; // version
                r.next().read_der()?; // serial
                r.next().read_der()?; // signature
                r.next().read_der()?; // issuer
                let validity = r.next().read_der()?;
                let _ = yasna::parse_der(&validity, |v| {
                    v.read_sequence(|v| {
                        tags.push(v.next().read_der()?[0]);
                        tags.push(v.next().read_der()?[0]);
                        Ok(())
                    })
                });
                while r.read_optional(|r| r.read_der())?.is_some() {}
            } else {
                r.next().read_der()?; // version
                r.next().read_der()?; // signature
                r.next().read_der()?; // issuer
                tags.push(r.next().read_der()?[0]);
                tags.push(r.next().read_der()?[0]);
                while r.read_optional(|r| r.read_der())?.is_some() {}
            }
            Ok(tags)
        })
    });
    result.unwrap_or_default()
}

fn expected_time_tag(unix: i64) -> u8 {
    let (year, ..) = ceremony_os_timestamp::Timestamp::from_unix(unix).civil();
    if year < 2050 { 0x17 } else { 0x18 }
}

fn lint_times(f: &mut Findings, tags: &[u8], times: [i64; 2], names: [&str; 2]) {
    for ((tag, unix), name) in tags.iter().zip(times).zip(names) {
        f.rule(*tag == expected_time_tag(unix), "time.encoding", || {
            format!(
                "{name} must be {} (RFC 5280 4.1.2.5)",
                if expected_time_tag(unix) == 0x17 { "UTCTime" } else { "GeneralizedTime" }
            )
        });
    }
    f.rule(tags.len() == 2, "time.structure", || "the times could not be read".into());
}

fn serial_ok(raw: &[u8]) -> bool {
    // DER INTEGER content: positive (top bit clear), minimal, at most 20 octets, not zero.
    let positive = raw.first().is_some_and(|b| b & 0x80 == 0);
    let minimal = raw.len() < 2 || !(raw[0] == 0 && raw[1] & 0x80 == 0);
    let magnitude = if raw.first() == Some(&0) { &raw[1..] } else { raw };
    positive && minimal && !magnitude.is_empty() && magnitude.len() <= 20 && magnitude.iter().any(|b| *b != 0)
}

/// The magnitude of a DER INTEGER content (leading zero byte dropped).
pub fn magnitude(raw: &[u8]) -> &[u8] {
    if raw.len() > 1 && raw[0] == 0 { &raw[1..] } else { raw }
}

fn uri_ok(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else { return false };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty()
        && uri.bytes().all(|b| b.is_ascii_graphic())
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

fn lint_extension_uris(f: &mut Findings, cert: &X509Certificate<'_>) {
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                        for name in names {
                            if let GeneralName::URI(uri) = name {
                                f.rule(uri_ok(uri), "extension.cdp.uri", || {
                                    format!("CRL distribution point {uri:?} is not an http:// URI")
                                });
                            }
                        }
                    }
                }
            }
            ParsedExtension::AuthorityInfoAccess(access) => {
                for description in &access.accessdescs {
                    if let GeneralName::URI(uri) = &description.access_location {
                        f.rule(uri_ok(uri), "extension.aia.uri", || {
                            format!("authority information access {uri:?} is not an http:// URI")
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

/// Check a certificate (signed, or signed by the throwaway key) against the rules.
pub fn certificate(der: &[u8], rules: &CertificateRules<'_>) -> Result<(), String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("the certificate does not parse: {e}"))?;
    let mut f = Findings::default();
    f.rule(rest.is_empty(), "structure.trailing", || "bytes after the certificate".into());
    f.rule(cert.version() == X509Version::V3, "structure.version", || "not a v3 certificate".into());
    f.rule(cert.signature_algorithm == cert.tbs_certificate.signature, "structure.algorithm", || {
        "the signature algorithm inside the certificate differs from the one outside".into()
    });
    f.rule(serial_ok(cert.raw_serial()), "serial.encoding", || {
        "the serial is not a positive, non-zero integer of at most 20 octets".into()
    });
    f.rule(magnitude(cert.raw_serial()) == super::strip_zeros(rules.serial), "serial.value", || {
        "the serial is not the one drawn".into()
    });
    lint_name(&mut f, cert.subject(), "subject");
    lint_name(&mut f, cert.issuer(), "issuer");
    f.rule(cert.issuer().as_raw() == rules.issuer_name, "name.issuer", || {
        "the issuer name is not the issuer certificate's subject, byte for byte".into()
    });
    let (nb, na) = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
    f.rule(nb < na, "time.order", || "notBefore is not before notAfter".into());
    f.rule(nb == rules.not_before && na == rules.not_after, "time.value", || {
        "the validity is not the one asked for".into()
    });
    lint_times(&mut f, &time_tags(cert.tbs_certificate.as_ref(), true), [nb, na], ["notBefore", "notAfter"]);

    let mut seen = BTreeSet::new();
    for extension in cert.extensions() {
        let oid = extension.oid.to_id_string();
        f.rule(seen.insert(oid.clone()), "extension.duplicate", || format!("extension {oid} appears twice"));
    }
    match cert.basic_constraints() {
        Ok(Some(bc)) => {
            f.rule(bc.critical && bc.value.ca, "extension.basic_constraints", || {
                "basicConstraints is not critical with cA TRUE".into()
            });
            f.rule(
                bc.value.path_len_constraint == rules.path_len.map(u32::from),
                "extension.path_len",
                || {
                    format!(
                        "pathLenConstraint is {:?}, the profile says {:?}",
                        bc.value.path_len_constraint, rules.path_len
                    )
                },
            );
        }
        _ => f.rule(false, "extension.basic_constraints", || "no basicConstraints".into()),
    }
    match cert.key_usage() {
        Ok(Some(ku)) => f.rule(
            ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign() && !ku.value.digital_signature(),
            "extension.key_usage",
            || "keyUsage is not critical keyCertSign + cRLSign".into(),
        ),
        _ => f.rule(false, "extension.key_usage", || "no keyUsage".into()),
    }
    let mut ski = None;
    let mut aki = None;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => ski = Some((extension.critical, id.0.to_vec())),
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                aki = Some((extension.critical, id.key_identifier.as_ref().map(|k| k.0.to_vec())))
            }
            _ => {}
        }
    }
    f.rule(
        matches!(&ski, Some((false, id)) if id.as_slice() == rules.subject_key_id),
        "extension.ski",
        || "subjectKeyIdentifier is missing, critical or not the subject key's".into(),
    );
    f.rule(matches!(&aki, Some((false, Some(id))) if id.as_slice() == rules.issuer_key_id), "extension.aki", || {
        "authorityKeyIdentifier is missing, critical, or its keyIdentifier is not the issuer's subject key identifier".into()
    });
    lint_extension_uris(&mut f, &cert);
    if let Err(e) = keys::check(cert.public_key().raw, rules.allowed_keys) {
        f.rule(false, "key.policy", || format!("the subject key is {e}"));
    }
    f.into_result("the certificate")
}

/// Check a certificate signing request: a v1 request, nothing after it, the subject and public
/// key the step asked for (the signature is checked by the signer's key, not here).
pub fn csr(der: &[u8], subject: &[u8], spki: &[u8]) -> Result<(), String> {
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| format!("the request does not parse: {e}"))?;
    let info = &csr.certification_request_info;
    let mut f = Findings::default();
    f.rule(rest.is_empty(), "structure.trailing", || "bytes after the request".into());
    f.rule(info.version.0 == 0, "structure.version", || "not a version 1 request".into());
    lint_name(&mut f, &info.subject, "subject");
    f.rule(info.subject.as_raw() == subject, "name.subject", || {
        "the subject is not the one asked for".into()
    });
    f.rule(info.subject_pki.raw == spki, "key.subject", || "the public key is not the HSM key's".into());
    f.into_result("the request")
}

/// Check a CRL (signed, or signed by the throwaway key) against the rules.
pub fn crl(der: &[u8], rules: &CrlRules<'_>) -> Result<(), String> {
    let (rest, crl) =
        CertificateRevocationList::from_der(der).map_err(|e| format!("the CRL does not parse: {e}"))?;
    let mut f = Findings::default();
    f.rule(rest.is_empty(), "structure.trailing", || "bytes after the CRL".into());
    f.rule(crl.tbs_cert_list.version == Some(X509Version::V2), "structure.version", || "not a v2 CRL".into());
    f.rule(crl.signature_algorithm == crl.tbs_cert_list.signature, "structure.algorithm", || {
        "the signature algorithm inside the CRL differs from the one outside".into()
    });
    lint_name(&mut f, crl.issuer(), "issuer");
    f.rule(crl.issuer().as_raw() == rules.issuer_name, "name.issuer", || {
        "the issuer name is not the issuer certificate's subject, byte for byte".into()
    });
    let this_update = crl.last_update().timestamp();
    let next_update = crl.next_update().map(|t| t.timestamp());
    f.rule(next_update.is_some_and(|n| n > this_update), "time.order", || {
        "nextUpdate is missing or not after thisUpdate".into()
    });
    f.rule(this_update == rules.this_update && next_update == Some(rules.next_update), "time.value", || {
        "thisUpdate/nextUpdate are not the ones asked for".into()
    });
    lint_times(
        &mut f,
        &time_tags(crl.tbs_cert_list.as_ref(), false),
        [rules.this_update, rules.next_update],
        ["thisUpdate", "nextUpdate"],
    );
    let listed: Vec<Vec<u8>> =
        crl.iter_revoked_certificates().map(|r| magnitude(r.raw_serial()).to_vec()).collect();
    for r in crl.iter_revoked_certificates() {
        f.rule(serial_ok(r.raw_serial()), "serial.encoding", || {
            format!(
                "revoked serial {} is not a positive integer of at most 20 octets",
                hex::encode(r.raw_serial())
            )
        });
    }
    let unique: BTreeSet<&Vec<u8>> = listed.iter().collect();
    f.rule(unique.len() == listed.len(), "serial.duplicate", || "a serial is listed twice".into());
    let wanted: Vec<Vec<u8>> = rules.serials.iter().map(|s| super::strip_zeros(s).to_vec()).collect();
    f.rule(listed == wanted, "serial.value", || "the CRL lists other serials than asked for".into());
    let mut number = None;
    let mut aki = None;
    for extension in crl.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::CRLNumber(n) => number = Some((extension.critical, n.to_u64_digits())),
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                aki = Some((extension.critical, id.key_identifier.as_ref().map(|k| k.0.to_vec())))
            }
            _ => {}
        }
    }
    let expected_number = if rules.number == 0 { vec![] } else { vec![rules.number] };
    f.rule(matches!(&number, Some((false, n)) if *n == expected_number), "extension.crl_number", || {
        "crlNumber is missing, critical or not the one asked for".into()
    });
    f.rule(
        matches!(&aki, Some((false, Some(id))) if id.as_slice() == rules.issuer_key_id),
        "extension.aki",
        || "authorityKeyIdentifier is missing, critical, or not the issuer's subject key identifier".into(),
    );
    f.into_result("the CRL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_encodings() {
        assert!(serial_ok(&[0x01]));
        assert!(serial_ok(&[0x00, 0x8a, 0x01]));
        assert!(!serial_ok(&[0x8a, 0x01]), "negative");
        assert!(!serial_ok(&[0x00, 0x01]), "not minimal");
        assert!(!serial_ok(&[0x00]), "zero");
        assert!(!serial_ok(&[0x01; 21]), "too long");
    }

    #[test]
    fn uris() {
        assert!(uri_ok("http://crl.example/root-2026.crl"));
        assert!(!uri_ok("https://x y/"));
        assert!(!uri_ok("ldap://x/"));
        assert!(!uri_ok("http:///nohost"));
        assert!(!uri_ok("javascript:alert(1)"));
    }
}
