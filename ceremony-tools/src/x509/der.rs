//! The DER the ceremony tool writes, built with yasna: SubjectPublicKeyInfo (RFC 5280 4.1.2.7,
//! RFC 3279, RFC 5480), names, validity times, the extensions a CA uses, TBSCertificate,
//! TBSCertList, CertificationRequestInfo, and the signed wrappers around them. Every field is
//! encoded as RFC 5280 asks: countryName as PrintableString, other DirectoryStrings as
//! UTF8String, times as UTCTime through 2049 and GeneralizedTime from 2050, INTEGERs minimal and
//! positive.

use yasna::models::ObjectIdentifier;
use yasna::{DERWriter, Tag};

fn oid(arcs: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(arcs)
}

pub const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
pub const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
pub const P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
pub const P384: &[u64] = &[1, 3, 132, 0, 34];
pub const SHA256_WITH_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 11];
pub const ECDSA_WITH_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
pub const ECDSA_WITH_SHA384: &[u64] = &[1, 2, 840, 10045, 4, 3, 3];

const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const SUBJECT_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 14];
const AUTHORITY_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 35];
const CRL_DISTRIBUTION_POINTS: &[u64] = &[2, 5, 29, 31];
const CRL_NUMBER: &[u64] = &[2, 5, 29, 20];
const REASON_CODE: &[u64] = &[2, 5, 29, 21];
const AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
const CA_ISSUERS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 2];

/// The DER of a named curve (what CKA_EC_PARAMS holds).
pub fn named_curve(curve: &[u64]) -> Vec<u8> {
    yasna::construct_der(|w| w.write_oid(&oid(curve)))
}

/// An INTEGER from unsigned big-endian bytes (leading zeros dropped, a zero added when the top
/// bit is set): the minimal positive encoding.
fn write_unsigned(w: DERWriter<'_>, be: &[u8]) {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let bytes = if trimmed.is_empty() { vec![0] } else { trimmed };
    w.write_bigint_bytes(&bytes, true);
}

pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let key = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            write_unsigned(w.next(), modulus);
            write_unsigned(w.next(), exponent);
        })
    });
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(RSA_ENCRYPTION));
                w.next().write_null();
            });
            w.next().write_bitvec_bytes(&key, key.len() * 8);
        })
    })
}

pub fn ec_spki(curve: &[u64], point: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(EC_PUBLIC_KEY));
                w.next().write_oid(&oid(curve));
            });
            w.next().write_bitvec_bytes(point, point.len() * 8);
        })
    })
}

/// An ECDSA-Sig-Value from PKCS#11's raw `r || s`.
pub fn ecdsa_signature(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            write_unsigned(w.next(), r);
            write_unsigned(w.next(), s);
        })
    })
}

/// AlgorithmIdentifier of a signature algorithm (RSA with an explicit NULL, ECDSA without).
pub fn signature_algorithm(alg: &[u64]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(alg));
            if alg == SHA256_WITH_RSA {
                w.next().write_null();
            }
        })
    })
}

/// One attribute of a distinguished name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameAttribute {
    Country,
    State,
    Locality,
    Organization,
    OrganizationalUnit,
    CommonName,
}

impl NameAttribute {
    fn oid(self) -> &'static [u64] {
        match self {
            NameAttribute::Country => &[2, 5, 4, 6],
            NameAttribute::State => &[2, 5, 4, 8],
            NameAttribute::Locality => &[2, 5, 4, 7],
            NameAttribute::Organization => &[2, 5, 4, 10],
            NameAttribute::OrganizationalUnit => &[2, 5, 4, 11],
            NameAttribute::CommonName => &[2, 5, 4, 3],
        }
    }
}

/// A Name: one RelativeDistinguishedName per attribute, in the order given.
pub fn name(attributes: &[(NameAttribute, String)]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for (attribute, value) in attributes {
                w.next().write_set(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(attribute.oid()));
                        if *attribute == NameAttribute::Country {
                            w.next().write_printable_string(value);
                        } else {
                            w.next().write_utf8_string(value);
                        }
                    })
                })
            }
        })
    })
}

/// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, always UTC with seconds.
pub fn time(unix: i64) -> Vec<u8> {
    let (y, mo, d, h, mi, s) = ceremony_os_timestamp::Timestamp::from_unix(unix).civil();
    let (tag, text) = if y < 2050 {
        (0x17u8, format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100))
    } else {
        (0x18u8, format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z"))
    };
    let mut out = vec![tag, text.len() as u8];
    out.extend(text.as_bytes());
    out
}

/// An Extension: OID, criticality (only when TRUE, as DER wants), the value's DER in an OCTET
/// STRING.
fn extension(w: DERWriter<'_>, id: &[u64], critical: bool, value: &[u8]) {
    w.write_sequence(|w| {
        w.next().write_oid(&oid(id));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(value);
    })
}

/// The extensions of a CA certificate.
#[derive(Debug, Clone)]
pub struct CaExtensions {
    /// `None`: unconstrained.
    pub path_len: Option<u8>,
    pub subject_key_id: Vec<u8>,
    /// The issuer's subject key identifier (for a root, its own).
    pub authority_key_id: Vec<u8>,
    pub crl_distribution_point: Option<String>,
    pub ca_issuers: Option<String>,
}

fn write_ca_extensions(w: DERWriter<'_>, e: &CaExtensions) {
    w.write_sequence(|w| {
        let basic = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_bool(true);
                if let Some(n) = e.path_len {
                    w.next().write_u8(n);
                }
            })
        });
        extension(w.next(), BASIC_CONSTRAINTS, true, &basic);
        // keyCertSign (bit 5) and cRLSign (bit 6): 0b0000_0110 in the first byte, 7 bits used.
        let usage = yasna::construct_der(|w| w.write_bitvec_bytes(&[0x06], 7));
        extension(w.next(), KEY_USAGE, true, &usage);
        extension(
            w.next(),
            SUBJECT_KEY_IDENTIFIER,
            false,
            &yasna::construct_der(|w| w.write_bytes(&e.subject_key_id)),
        );
        extension(w.next(), AUTHORITY_KEY_IDENTIFIER, false, &authority_key_identifier(&e.authority_key_id));
        if let Some(uri) = &e.crl_distribution_point {
            let cdp = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        // distributionPoint [0] { fullName [0] { uniformResourceIdentifier [6] } }
                        w.next().write_tagged(Tag::context(0), |w| {
                            w.write_tagged_implicit(Tag::context(0), |w| {
                                w.write_sequence(|w| {
                                    w.next()
                                        .write_tagged_implicit(Tag::context(6), |w| w.write_ia5_string(uri))
                                })
                            })
                        })
                    })
                })
            });
            extension(w.next(), CRL_DISTRIBUTION_POINTS, false, &cdp);
        }
        if let Some(uri) = &e.ca_issuers {
            let aia = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(CA_ISSUERS));
                        w.next().write_tagged_implicit(Tag::context(6), |w| w.write_ia5_string(uri));
                    })
                })
            });
            extension(w.next(), AUTHORITY_INFO_ACCESS, false, &aia);
        }
    })
}

fn authority_key_identifier(key_id: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| w.next().write_tagged_implicit(Tag::context(0), |w| w.write_bytes(key_id)))
    })
}

/// What goes into a TBSCertificate.
#[derive(Debug, Clone)]
pub struct TbsCertificate {
    pub serial: Vec<u8>,
    pub signature_algorithm: &'static [u64],
    /// DER of the issuer Name (the issuer certificate's subject, byte for byte).
    pub issuer: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    /// DER of the subject Name (a CSR's, byte for byte, or one built from a step file).
    pub subject: Vec<u8>,
    /// DER of the SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    pub extensions: CaExtensions,
}

pub fn tbs_certificate(t: &TbsCertificate) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_tagged(Tag::context(0), |w| w.write_u8(2));
            write_unsigned(w.next(), &t.serial);
            w.next().write_der(&signature_algorithm(t.signature_algorithm));
            w.next().write_der(&t.issuer);
            w.next().write_sequence(|w| {
                w.next().write_der(&time(t.not_before));
                w.next().write_der(&time(t.not_after));
            });
            w.next().write_der(&t.subject);
            w.next().write_der(&t.spki);
            w.next().write_tagged(Tag::context(3), |w| write_ca_extensions(w, &t.extensions));
        })
    })
}

/// A signed object: `SEQUENCE { to-be-signed, AlgorithmIdentifier, BIT STRING signature }`
/// (Certificate, CertificateList and CertificationRequest share it).
pub fn signed(tbs: &[u8], algorithm: &'static [u64], signature: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(tbs);
            w.next().write_der(&signature_algorithm(algorithm));
            w.next().write_bitvec_bytes(signature, signature.len() * 8);
        })
    })
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Unsigned big-endian, minimal.
    pub serial: Vec<u8>,
    pub revoked_at: i64,
    pub reason: u8,
}

#[derive(Debug, Clone)]
pub struct TbsCrl {
    pub signature_algorithm: &'static [u64],
    pub issuer: Vec<u8>,
    pub this_update: i64,
    pub next_update: i64,
    pub revoked: Vec<Revoked>,
    pub authority_key_id: Vec<u8>,
    pub number: u64,
}

pub fn tbs_crl(t: &TbsCrl) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(1); // v2
            w.next().write_der(&signature_algorithm(t.signature_algorithm));
            w.next().write_der(&t.issuer);
            w.next().write_der(&time(t.this_update));
            w.next().write_der(&time(t.next_update));
            if !t.revoked.is_empty() {
                w.next().write_sequence(|w| {
                    for r in &t.revoked {
                        w.next().write_sequence(|w| {
                            write_unsigned(w.next(), &r.serial);
                            w.next().write_der(&time(r.revoked_at));
                            // reasonCode is omitted for "unspecified" (RFC 5280 5.3.1 SHOULD).
                            if r.reason != 0 {
                                w.next().write_sequence(|w| {
                                    let code = yasna::construct_der(|w| w.write_enum(i64::from(r.reason)));
                                    extension(w.next(), REASON_CODE, false, &code);
                                })
                            }
                        })
                    }
                })
            }
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    extension(
                        w.next(),
                        AUTHORITY_KEY_IDENTIFIER,
                        false,
                        &authority_key_identifier(&t.authority_key_id),
                    );
                    let number = yasna::construct_der(|w| write_unsigned(w, &t.number.to_be_bytes()));
                    extension(w.next(), CRL_NUMBER, false, &number);
                })
            });
        })
    })
}

/// CertificationRequestInfo with no attributes (PKCS #10).
pub fn certification_request_info(subject: &[u8], spki: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            w.next().write_der(subject);
            w.next().write_der(spki);
            w.next().write_tagged_implicit(Tag::context(0), |w| w.write_set(|_| {}));
        })
    })
}

pub fn pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// CKA_EC_POINT is the point wrapped in a DER OCTET STRING (PKCS#11 2.40 2.3.3); some tokens
/// give the raw point. Accept both.
pub fn unwrap_ec_point(value: &[u8]) -> Vec<u8> {
    // A raw uncompressed P-256 or P-384 point is 65 or 97 bytes; wrapped, it is longer.
    if matches!(value.len(), 65 | 97) && value[0] == 0x04 {
        return value.to_vec();
    }
    match yasna::parse_der(value, |r| r.read_bytes()) {
        Ok(inner) if inner.first() == Some(&0x04) => inner,
        _ => value.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_switch_to_generalized_in_2050() {
        assert_eq!(time(1_796_083_200), b"\x17\x0d261201000000Z".to_vec()); // 2026-12-01
        let y2050 = 2_524_608_000; // 2050-01-01
        assert_eq!(time(y2050), b"\x18\x0f20500101000000Z".to_vec());
    }

    #[test]
    fn country_is_printable_and_others_utf8() {
        let der = name(&[(NameAttribute::Country, "CH".into()), (NameAttribute::CommonName, "Root".into())]);
        // SET { SEQUENCE { OID 2.5.4.6, PrintableString "CH" } }
        assert!(der.windows(4).any(|w| w == [0x13, 0x02, b'C', b'H']), "{der:02x?}");
        assert!(der.windows(6).any(|w| w == [0x0c, 0x04, b'R', b'o', b'o', b't']), "{der:02x?}");
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        let der = yasna::construct_der(|w| write_unsigned(w, &[0x00, 0x8a, 0x01]));
        assert_eq!(der, [0x02, 0x03, 0x00, 0x8a, 0x01]);
        let der = yasna::construct_der(|w| write_unsigned(w, &[0x00, 0x00, 0x7f]));
        assert_eq!(der, [0x02, 0x01, 0x7f]);
    }

    #[test]
    fn raw_ecdsa_signatures_become_der() {
        let mut raw = vec![0x80; 32];
        raw.extend(vec![0x01; 32]);
        let der = ecdsa_signature(&raw);
        assert_eq!(&der[..4], [0x30, 69, 0x02, 33]);
        assert_eq!(der[4], 0x00, "a high bit gets a leading zero");
        assert_eq!(&der[37..39], [0x02, 32]);
    }

    #[test]
    fn ec_points_wrapped_or_not() {
        let point = [0x04, 1, 2, 3];
        let wrapped = yasna::construct_der(|w| w.write_bytes(&point));
        assert_eq!(unwrap_ec_point(&wrapped), point);
        assert_eq!(unwrap_ec_point(&point), point);
    }
}
