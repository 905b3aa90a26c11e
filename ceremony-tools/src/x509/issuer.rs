//! The issuer's certificate, checked before the HSM is used: it must be a CA certificate
//! (basicConstraints cA TRUE, keyUsage keyCertSign, a subject key identifier), its signature must
//! verify (with its own key when it is self-signed, else with one of the chain certificates the
//! step names), its path length must allow what it is about to issue, and its validity must cover
//! what it signs. A file edited after it was signed, a leaf certificate or a CA with
//! pathLenConstraint 0 asked to issue a CA are refused.

use crate::config::Inputs;
use anyhow::{Result, anyhow, bail};
use std::path::{Path, PathBuf};
use x509_parser::prelude::*;

#[derive(Debug, Clone)]
pub struct Issuer {
    pub path: PathBuf,
    pub der: Vec<u8>,
    /// Its subject Name, DER: the issuer name of what it signs.
    pub subject: Vec<u8>,
    pub spki: Vec<u8>,
    /// Its subjectKeyIdentifier: the authorityKeyIdentifier of what it signs.
    pub key_id: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub path_len: Option<u32>,
    pub crl_sign: bool,
}

/// The DER inside a PEM file, checking its label.
pub fn read_pem(inputs: &Inputs, path: &Path, label: &str) -> Result<Vec<u8>> {
    let bytes = inputs.read(path)?;
    let parsed = ::pem::parse(&bytes).map_err(|e| anyhow!("{}: not PEM: {e}", path.display()))?;
    if parsed.tag() != label {
        bail!("{}: a PEM {:?}, expected {label:?}", path.display(), parsed.tag());
    }
    Ok(parsed.contents().to_vec())
}

impl Issuer {
    /// Load `path` and check it; `chain` holds the certificates that may have signed it (empty
    /// for a self-signed root).
    pub fn load(inputs: &Inputs, path: &Path, chain: &[PathBuf]) -> Result<Issuer> {
        let der = read_pem(inputs, path, "CERTIFICATE")?;
        let err = |message: String| anyhow!("issuer certificate {}: {message}", path.display());
        let (rest, cert) =
            X509Certificate::from_der(&der).map_err(|e| err(format!("does not parse: {e}")))?;
        if !rest.is_empty() {
            return Err(err("trailing bytes after the certificate".into()));
        }
        let self_issued = cert.subject().as_raw() == cert.issuer().as_raw();
        if self_issued {
            cert.verify_signature(None).map_err(|e| {
                err(format!("its self-signature does not verify ({e}): it was altered after signing"))
            })?;
        } else {
            let mut verified = false;
            for parent_path in chain {
                let parent_der = read_pem(inputs, parent_path, "CERTIFICATE")?;
                let (_, parent) = X509Certificate::from_der(&parent_der)
                    .map_err(|e| anyhow!("chain certificate {}: {e}", parent_path.display()))?;
                if parent.subject().as_raw() == cert.issuer().as_raw() {
                    cert.verify_signature(Some(parent.public_key())).map_err(|e| {
                        err(format!("its signature does not verify with {} ({e})", parent_path.display()))
                    })?;
                    verified = true;
                }
            }
            if !verified {
                return Err(err(format!(
                    "it is not self-signed and no certificate of issuer.chain is its issuer ({}); name the certificate that signed it",
                    cert.issuer()
                )));
            }
        }
        let constraints = cert.basic_constraints().ok().flatten();
        if !constraints.as_ref().is_some_and(|c| c.value.ca) {
            return Err(err("it is not a CA certificate (no basicConstraints cA TRUE)".into()));
        }
        let usage = cert.key_usage().ok().flatten();
        if !usage.as_ref().is_some_and(|u| u.value.key_cert_sign()) {
            return Err(err("its keyUsage does not allow keyCertSign".into()));
        }
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| err("it has no subjectKeyIdentifier".into()))?;
        Ok(Issuer {
            path: path.to_path_buf(),
            subject: cert.subject().as_raw().to_vec(),
            spki: cert.public_key().raw.to_vec(),
            key_id,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            path_len: constraints.and_then(|c| c.value.path_len_constraint),
            crl_sign: usage.is_some_and(|u| u.value.crl_sign()),
            der,
        })
    }

    /// May it issue a CA certificate with `path_len`?
    pub fn may_issue_ca(&self, path_len: Option<u8>) -> Result<()> {
        match (self.path_len, path_len) {
            (None, _) => Ok(()),
            (Some(0), _) => bail!(
                "issuer certificate {} has pathLenConstraint 0: it may not issue CA certificates",
                self.path.display()
            ),
            (Some(n), Some(m)) if u32::from(m) < n => Ok(()),
            (Some(n), wanted) => bail!(
                "issuer certificate {} has pathLenConstraint {n}: a CA it issues needs a path length below {n}, the profile says {}",
                self.path.display(),
                wanted.map_or("unconstrained".into(), |m| m.to_string())
            ),
        }
    }

    /// Does its validity cover `[from, to]`?
    pub fn covers(&self, from: i64, to: i64, what: &str) -> Result<()> {
        if from < self.not_before || to > self.not_after {
            bail!(
                "{what} must lie within the issuer certificate's validity ({} .. {})",
                self.not_before_text(),
                self.not_after_text()
            );
        }
        Ok(())
    }

    fn not_before_text(&self) -> String {
        ceremony_os_timestamp::Timestamp::from_unix(self.not_before).to_string()
    }

    fn not_after_text(&self) -> String {
        ceremony_os_timestamp::Timestamp::from_unix(self.not_after).to_string()
    }
}
