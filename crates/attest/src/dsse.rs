//! DSSE envelopes (Dead Simple Signing Envelope, v1): the payload, its type, and signatures over
//! the pre-authentication encoding `PAE(type, payload)`, in the JSON form in-toto tools read.

use crate::AttestError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub keyid: String,
    pub sig: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<RawSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// The bytes a signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    pub fn to_json(&self) -> String {
        let raw = RawEnvelope {
            payload_type: self.payload_type.clone(),
            payload: STANDARD.encode(&self.payload),
            signatures: self
                .signatures
                .iter()
                .map(|s| RawSignature { keyid: s.keyid.clone(), sig: STANDARD.encode(&s.sig) })
                .collect(),
        };
        serde_json::to_string_pretty(&raw).expect("an envelope serializes") + "\n"
    }

    pub fn from_json(bytes: &[u8]) -> Result<Envelope, AttestError> {
        let raw: RawEnvelope = serde_json::from_slice(bytes)
            .map_err(|e| AttestError::Malformed(format!("not a DSSE envelope: {e}")))?;
        let decode = |what: &str, text: &str| {
            STANDARD.decode(text).map_err(|e| AttestError::Malformed(format!("{what} is not base64: {e}")))
        };
        Ok(Envelope {
            payload: decode("payload", &raw.payload)?,
            payload_type: raw.payload_type,
            signatures: raw
                .signatures
                .iter()
                .map(|s| Ok(Signature { keyid: s.keyid.clone(), sig: decode("sig", &s.sig)? }))
                .collect::<Result<_, AttestError>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_specification_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn envelopes_round_trip_and_reject_garbage() {
        let env = Envelope {
            payload_type: "application/vnd.in-toto+json".into(),
            payload: b"{}".to_vec(),
            signatures: vec![Signature { keyid: "SHA256:abc".into(), sig: vec![1, 2, 3] }],
        };
        assert_eq!(Envelope::from_json(env.to_json().as_bytes()).unwrap(), env);
        assert!(
            Envelope::from_json(b"{\"payloadType\":\"x\",\"payload\":\"!!\",\"signatures\":[]}").is_err()
        );
        assert!(Envelope::from_json(b"[]").is_err());
    }
}
