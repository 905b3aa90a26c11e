//! ed25519 keys: a witness's signing key (an OpenSSH private key file, unencrypted, or a PKCS#8
//! PEM key, or an ssh-agent that holds it), public keys as OpenSSH writes them, and key ids (the OpenSSH SHA-256 fingerprint,
//! `SHA256:...`, as `ssh-keygen -l` prints it).

use crate::AttestError;
use crate::dsse::{Envelope, Signature};
use ed25519_dalek::{Signer as _, Verifier as _};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, AttestError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|e| AttestError::Malformed(format!("not an ed25519 public key: {e}")))
    }

    /// The key in SSH wire form (string "ssh-ed25519", string key), as in authorized_keys'
    /// base64 and the ssh-agent protocol.
    pub fn wire_blob(&self) -> Vec<u8> {
        [&[0, 0, 0, 11][..], b"ssh-ed25519", &[0, 0, 0, 32], self.0.as_bytes()].concat()
    }

    /// The key of an SSH wire blob; None unless it is exactly an ssh-ed25519 key.
    pub fn from_wire_blob(blob: &[u8]) -> Option<PublicKey> {
        let raw: [u8; 32] = blob
            .strip_prefix(&[0, 0, 0, 11][..])?
            .strip_prefix(b"ssh-ed25519")?
            .strip_prefix(&[0, 0, 0, 32][..])?
            .try_into()
            .ok()?;
        PublicKey::from_bytes(&raw).ok()
    }

    /// The base64 key field of an OpenSSH public key line (as in `.pub` and allowed_signers):
    /// Err if it is not base64, Ok(None) if it is not exactly an ssh-ed25519 key blob.
    pub fn from_base64_blob(text: &str) -> Result<Option<PublicKey>, base64::DecodeError> {
        use base64::Engine as _;
        let blob = base64::engine::general_purpose::STANDARD.decode(text)?;
        Ok(PublicKey::from_wire_blob(&blob))
    }

    /// A public key file's line as ssh-keygen writes it: `ssh-ed25519 AAAA... [comment]`.
    pub fn from_openssh(text: &str, origin: &str) -> Result<PublicKey, AttestError> {
        let err = |message: &str| AttestError::Key { what: origin.to_string(), message: message.to_string() };
        let mut fields = text.split_whitespace();
        if fields.next() != Some("ssh-ed25519") {
            return Err(err("expected an ssh-ed25519 public key (`ssh-ed25519 AAAA...`)"));
        }
        match fields.next().map(PublicKey::from_base64_blob) {
            Some(Ok(Some(key))) => Ok(key),
            Some(Ok(None)) => Err(err("the key blob is not an ssh-ed25519 key")),
            _ => Err(err("the key is not base64")),
        }
    }

    fn ssh(&self) -> ssh_key::PublicKey {
        ssh_key::PublicKey::from(ssh_key::public::Ed25519PublicKey(self.0.to_bytes()))
    }

    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fn keyid(&self) -> String {
        self.ssh().fingerprint(ssh_key::HashAlg::Sha256).to_string()
    }

    /// `ssh-ed25519 AAAA...`, as in an allowed_signers or authorized_keys line.
    pub fn to_openssh(&self) -> String {
        self.ssh().to_openssh().expect("an ed25519 key encodes")
    }

    /// Whether `sig` is this key's Ed25519ph signature (RFC 8032, no context) of the SHA-512
    /// of `message`.
    pub fn verifies_prehashed(&self, message: &[u8], sig: &[u8]) -> bool {
        use sha2::Digest;
        ed25519_dalek::Signature::from_slice(sig).is_ok_and(|sig| {
            self.0.verify_prehashed(sha2::Sha512::new().chain_update(message), None, &sig).is_ok()
        })
    }

    /// Whether `sig` is this key's ed25519 signature over `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        ed25519_dalek::Signature::from_slice(sig).is_ok_and(|sig| self.0.verify(message, &sig).is_ok())
    }
}

#[derive(Debug)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// Read a private key: OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`, not encrypted)
    /// or PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<SigningKey, AttestError> {
        let err = |message: String| AttestError::Key { what: origin.to_string(), message };
        let text = std::str::from_utf8(bytes).map_err(|_| err("not a text key file".into()))?;
        if text.trim_start().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
            let key = ssh_key::PrivateKey::from_openssh(text)
                .map_err(|e| err(format!("not an OpenSSH private key: {e}")))?;
            if key.is_encrypted() {
                return Err(err(
                    "the key is encrypted with a passphrase: decrypt a copy for signing (ssh-keygen -p)"
                        .into(),
                ));
            }
            let Some(pair) = key.key_data().ed25519() else {
                return Err(err(format!("a {} key; witnesses sign with ed25519 keys", key.algorithm())));
            };
            Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&pair.private.to_bytes())))
        } else if text.trim_start().starts_with("-----BEGIN PRIVATE KEY-----") {
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            ed25519_dalek::SigningKey::from_pkcs8_pem(text)
                .map(SigningKey)
                .map_err(|e| err(format!("not a PKCS#8 ed25519 key: {e}")))
        } else {
            Err(err("expected an OpenSSH or PKCS#8 PEM ed25519 private key".into()))
        }
    }

    /// The key of a 32-byte ed25519 seed (RFC 8032's private key): fixed keys for test vectors,
    /// fuzz seeds and tests.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The key as PKCS#8 PEM, a file `from_bytes` (and `--signing-key`) reads.
    pub fn to_pkcs8_pem(&self) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        self.0
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("an ed25519 key encodes")
            .to_string()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// An Ed25519ph signature (RFC 8032, no context) of the SHA-512 of `message`: what a
    /// transparency log that takes only prehashed signatures verifies.
    pub fn sign_prehashed(&self, message: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        self.0
            .sign_prehashed(sha2::Sha512::new().chain_update(message), None)
            .expect("Ed25519ph signs without a context")
            .to_bytes()
            .to_vec()
    }

    /// Sign `payload` of `payload_type` into a DSSE envelope.
    pub fn sign_envelope(&self, payload_type: &str, payload: Vec<u8>) -> Envelope {
        let mut envelope =
            Envelope { payload_type: payload_type.to_string(), payload, signatures: Vec::new() };
        let sig = self.0.sign(&envelope.signed_bytes()).to_bytes().to_vec();
        envelope.signatures.push(Signature { keyid: self.public().keyid(), sig });
        envelope
    }
}

/// Whatever signs for the witness: a key file, or an ssh-agent holding the key (on disk or on a
/// token), asked for each signature.
#[derive(Debug)]
pub enum Signer {
    Key(SigningKey),
    Agent(crate::agent::Agent),
}

impl Signer {
    /// The signer a witness's key file names: an OpenSSH public key (`ssh-ed25519 AAAA...`) is
    /// signed for by the ssh-agent at `agent_socket` (SSH_AUTH_SOCK, as the caller read it),
    /// which must hold it; anything else is read as a private key (OpenSSH or PKCS#8 PEM).
    pub fn from_key_file(
        bytes: &[u8],
        origin: &str,
        agent_socket: Option<&std::path::Path>,
    ) -> Result<Signer, AttestError> {
        if !bytes.starts_with(b"ssh-") {
            return Ok(Signer::Key(SigningKey::from_bytes(bytes, origin)?));
        }
        let public = PublicKey::from_openssh(&String::from_utf8_lossy(bytes), origin)?;
        let Some(socket) = agent_socket else {
            return Err(AttestError::Malformed(format!(
                "{origin} is a public key: an ssh-agent holding it signs, but SSH_AUTH_SOCK is not set"
            )));
        };
        Ok(Signer::Agent(crate::agent::Agent::new(socket, public)?))
    }

    pub fn public(&self) -> PublicKey {
        match self {
            Signer::Key(key) => key.public(),
            Signer::Agent(agent) => agent.public().clone(),
        }
    }

    /// Sign `payload` of `payload_type` into a DSSE envelope.
    pub fn sign_envelope(&self, payload_type: &str, payload: Vec<u8>) -> Result<Envelope, AttestError> {
        match self {
            Signer::Key(key) => Ok(key.sign_envelope(payload_type, payload)),
            Signer::Agent(agent) => {
                let mut envelope =
                    Envelope { payload_type: payload_type.to_string(), payload, signatures: Vec::new() };
                let sig = agent.sign(&envelope.signed_bytes())?;
                envelope.signatures.push(Signature { keyid: agent.public().keyid(), sig });
                Ok(envelope)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A seed's key written as PKCS#8 PEM holds the seed in RFC 8410's layout (after the
    /// ed25519 algorithm and the OCTET STRING header; dalek writes the v2 form, with the public
    /// key after it), and reads back as the same key.
    #[test]
    fn a_seed_key_round_trips_through_pkcs8_pem() {
        use base64::Engine;
        let key = SigningKey::from_seed(&[7; 32]);
        let pem = key.to_pkcs8_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        let prefix =
            [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        assert_eq!((&der[5..16], &der[16..48]), (&prefix[5..], &[7u8; 32][..]));
        assert_eq!(SigningKey::from_bytes(pem.as_bytes(), "k").unwrap().public(), key.public());
    }

    /// An OpenSSH ed25519 key made with `ssh-keygen -t ed25519 -N '' -C test`, and its public key.
    pub(crate) const OPENSSH_KEY: &str = include_str!("../tests/fixtures/witness");
    pub(crate) const PUBLIC_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFP4nj9xlOhrZIUdyiwuqMLhRcElUugRTuSgHA+yOs0F";

    #[test]
    fn an_openssh_key_signs_envelopes_its_public_key_verifies() {
        let key = SigningKey::from_bytes(OPENSSH_KEY.as_bytes(), "test").unwrap();
        let envelope = key.sign_envelope("t", b"payload".to_vec());
        let sig = &envelope.signatures[0];
        assert_eq!(sig.keyid, key.public().keyid());
        assert!(sig.keyid.starts_with("SHA256:"));
        assert!(key.public().verifies(&envelope.signed_bytes(), &sig.sig));
        assert!(!key.public().verifies(b"other", &sig.sig));
        // As ssh-keygen -l -f prints this key's fingerprint.
        assert_eq!(sig.keyid, "SHA256:/6flyRKKrHD0Gqv0gXqbkcMT2356fiV81yCYCCO2mow");
        assert_eq!(key.public().to_openssh(), PUBLIC_KEY);
    }

    #[test]
    fn a_key_file_names_its_signer() {
        let signer = Signer::from_key_file(OPENSSH_KEY.as_bytes(), "id", None).unwrap();
        assert!(matches!(signer, Signer::Key(_)));
        assert_eq!(signer.public().to_openssh(), PUBLIC_KEY);
        let public = format!("{PUBLIC_KEY} test\n");
        let err = Signer::from_key_file(public.as_bytes(), "id.pub", None).unwrap_err().to_string();
        assert!(err.contains("id.pub is a public key") && err.contains("SSH_AUTH_SOCK is not set"), "{err}");
        let missing = std::path::Path::new("/nonexistent/agent.sock");
        assert!(Signer::from_key_file(public.as_bytes(), "id.pub", Some(missing)).is_err());
    }

    #[test]
    fn public_keys_read_as_ssh_keygen_writes_them() {
        let key = PublicKey::from_openssh(&format!("{PUBLIC_KEY} test\n"), "k.pub").unwrap();
        assert_eq!(key.to_openssh(), PUBLIC_KEY);
        assert_eq!(PublicKey::from_wire_blob(&key.wire_blob()), Some(key));
        for bad in ["ssh-rsa AAAA", "ssh-ed25519 !!!", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", ""] {
            assert!(
                PublicKey::from_openssh(bad, "k.pub").unwrap_err().to_string().starts_with("k.pub: "),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_keys_are_named() {
        let err = SigningKey::from_bytes(b"ssh-ed25519 AAAA", "k").unwrap_err().to_string();
        assert!(err.starts_with("k: expected an OpenSSH"), "{err}");
    }
}
