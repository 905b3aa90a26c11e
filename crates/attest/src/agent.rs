//! Signing through an ssh-agent: OpenSSH's, or gpg-agent's ssh support, which keeps an ed25519
//! key on an OpenPGP card or token. The private key never leaves the agent. Only what a DSSE
//! signature needs of the agent protocol (draft-miller-ssh-agent): list the agent's keys, and
//! ask for a plain ed25519 signature, which is checked before it is used.

use crate::AttestError;
use crate::keys::PublicKey;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

const FAILURE: u8 = 5;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
/// An agent's answer is a few keys or one signature; anything longer is not an agent.
const MAX_REPLY: usize = 256 * 1024;

/// An agent at a socket that holds `key`.
#[derive(Debug)]
pub struct Agent {
    socket: PathBuf,
    key: PublicKey,
}

impl Agent {
    /// Connect to the agent at `socket` and check that it holds `key` (so a wrong agent or key
    /// fails before anything long runs).
    pub fn new(socket: &Path, key: PublicKey) -> Result<Agent, AttestError> {
        let agent = Agent { socket: socket.to_path_buf(), key };
        let answer = agent.request(REQUEST_IDENTITIES, &[], IDENTITIES_ANSWER)?;
        let mut reader = Reader { rest: &answer };
        let count = reader.u32().map_err(|e| agent.error(e))?;
        let wanted = agent.key.wire_blob();
        for _ in 0..count {
            let blob = reader.string().map_err(|e| agent.error(e))?;
            reader.string().map_err(|e| agent.error(e))?; // the comment
            if blob == wanted.as_slice() {
                return Ok(agent);
            }
        }
        Err(agent.error(&format!(
            "the agent does not hold {} (`ssh-add -l` lists the keys it holds)",
            agent.key.keyid()
        )))
    }

    pub fn public(&self) -> &PublicKey {
        &self.key
    }

    /// The agent's ed25519 signature over `data`, verified with the key before it is returned.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, AttestError> {
        let mut body = Vec::new();
        put_string(&mut body, &self.key.wire_blob());
        put_string(&mut body, data);
        body.extend_from_slice(&0u32.to_be_bytes()); // flags: none (they only concern RSA)
        let response = self.request(SIGN_REQUEST, &body, SIGN_RESPONSE)?;
        let blob = Reader { rest: &response }.string().map_err(|e| self.error(e))?;
        let mut signature = Reader { rest: blob };
        let algorithm = signature.string().map_err(|e| self.error(e))?;
        if algorithm != b"ssh-ed25519" {
            return Err(self.error(&format!(
                "the agent signed with {}, not plain ed25519 (FIDO sk- keys cannot sign DSSE envelopes)",
                String::from_utf8_lossy(algorithm)
            )));
        }
        let sig = signature.string().map_err(|e| self.error(e))?;
        if !self.key.verifies(data, sig) {
            return Err(self.error("the agent's signature does not verify with the key"));
        }
        Ok(sig.to_vec())
    }

    /// One request, one reply of kind `expected` (the agent closes nothing: a fresh connection
    /// per request keeps it simple).
    fn request(&self, kind: u8, body: &[u8], expected: u8) -> Result<Vec<u8>, AttestError> {
        let io = |e: std::io::Error| self.error(&format!("cannot talk to the agent: {e}"));
        let mut stream = UnixStream::connect(&self.socket).map_err(io)?;
        let length = u32::try_from(body.len() + 1).map_err(|_| self.error("request too long"))?;
        let mut message = length.to_be_bytes().to_vec();
        message.push(kind);
        message.extend_from_slice(body);
        stream.write_all(&message).map_err(io)?;
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).map_err(io)?;
        let length = u32::from_be_bytes(length) as usize;
        if length == 0 || length > MAX_REPLY {
            return Err(self.error(&format!("the agent's reply is {length} bytes long")));
        }
        let mut reply = vec![0u8; length];
        stream.read_exact(&mut reply).map_err(io)?;
        match reply[0] {
            k if k == expected => Ok(reply[1..].to_vec()),
            FAILURE => {
                Err(self.error("the agent refused (is it locked, or does the token want a PIN or a touch?)"))
            }
            other => Err(self.error(&format!("unexpected reply type {other} from the agent"))),
        }
    }

    fn error(&self, message: &str) -> AttestError {
        AttestError::Key {
            what: format!("ssh-agent at {}", self.socket.display()),
            message: message.to_string(),
        }
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, &'static str> {
        let (head, rest) = self.rest.split_first_chunk::<4>().ok_or("the agent's reply is cut short")?;
        self.rest = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn string(&mut self) -> Result<&'a [u8], &'static str> {
        let length = self.u32()? as usize;
        if length > self.rest.len() {
            return Err("the agent's reply is cut short");
        }
        let (value, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_replies_are_refused_not_read_past() {
        let mut reader = Reader { rest: &[0, 0, 0, 9, 1, 2] };
        assert_eq!(reader.string(), Err("the agent's reply is cut short"));
        let mut reader = Reader { rest: &[0, 0] };
        assert!(reader.u32().is_err());
        let mut reader = Reader { rest: &[0, 0, 0, 2, 7, 8, 9] };
        assert_eq!(reader.string(), Ok(&[7u8, 8][..]));
    }
}
