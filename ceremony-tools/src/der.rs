//! The little DER the tools write: SubjectPublicKeyInfo for RSA and EC public keys read back from
//! the HSM (RFC 5280 4.1.2.7, RFC 3279, RFC 5480), and PEM armour.

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn integer(unsigned_be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = unsigned_be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = if trimmed.is_empty() { vec![0] } else { trimmed };
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

fn sequence(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0u8];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// The OID DER (`06 len ...`) of a named curve parameter, as CKA_EC_PARAMS holds it.
pub fn named_curve(oid: &[u8]) -> Vec<u8> {
    tlv(0x06, oid)
}

pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let algorithm = sequence(&[tlv(0x06, OID_RSA_ENCRYPTION), vec![0x05, 0x00]]);
    let key = sequence(&[integer(modulus), integer(exponent)]);
    sequence(&[algorithm, bit_string(&key)])
}

pub fn ec_spki(curve_oid: &[u8], point: &[u8]) -> Vec<u8> {
    let algorithm = sequence(&[tlv(0x06, OID_EC_PUBLIC_KEY), tlv(0x06, curve_oid)]);
    sequence(&[algorithm, bit_string(point)])
}

/// CKA_EC_POINT is the point wrapped in a DER OCTET STRING (PKCS#11 2.40 2.3.3); some tokens
/// give the raw point. Accept both.
pub fn unwrap_ec_point(value: &[u8]) -> Vec<u8> {
    if value.first() == Some(&0x04) && value.len() > 2 {
        let (len, header) = match value[1] {
            n if n < 0x80 => (n as usize, 2),
            0x81 if value.len() > 3 => (value[2] as usize, 3),
            _ => (0, 0),
        };
        if header > 0 && header + len == value.len() {
            return value[header..].to_vec();
        }
    }
    value.to_vec()
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", body.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        assert_eq!(&tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(&tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 1, 44]);
        assert_eq!(integer(&[0x80]), [0x02, 2, 0, 0x80]);
        assert_eq!(integer(&[0, 0, 1]), [0x02, 1, 1]);
    }

    #[test]
    fn ec_point_unwrapping() {
        let point = [0x04; 65];
        let wrapped = tlv(0x04, &point);
        assert_eq!(unwrap_ec_point(&wrapped), point);
        assert_eq!(unwrap_ec_point(&point), point);
    }
}
