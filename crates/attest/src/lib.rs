//! Witness attestations. A witness who rebuilt the image signs what they found: an in-toto
//! Statement v1 about the ISO (its name and SHA-256) with a SLSA Verification Summary predicate
//! (who verified, when, against which source commit and lock, PASSED or FAILED), in a DSSE
//! envelope signed with their ed25519 key (an OpenSSH key file, a PKCS#8 PEM key, or an ssh-agent
//! holding the key, on disk or on a token). Whoever
//! burns the disc checks that at least M distinct witnesses of an OpenSSH `allowed_signers` file
//! attest PASSED for exactly that digest.
//!
//! Parsers take bytes; nothing here reads files or the clock; `agent` is the one module that
//! does I/O (the agent's socket, named by the caller).

pub mod agent;
pub mod check;
pub mod dsse;
pub mod keys;
pub mod policy;
pub mod rekor;
pub mod statement;
pub mod trust;

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("{what}: {message}")]
    Key { what: String, message: String },
    #[error("{origin}:{line}: {message}")]
    Trust { origin: String, line: usize, message: String },
    #[error("{0}")]
    Malformed(String),
}
