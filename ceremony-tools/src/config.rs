//! Ceremony step configurations: one reviewed TOML file per step, parsed strictly (unknown keys
//! are errors, with file, line and column).

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSection {
    /// The PKCS#11 module (`--module` overrides it).
    pub module: Option<PathBuf>,
    /// Label of the token to use (exactly one token must have it).
    pub token_label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyType {
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "ec-p256")]
    EcP256,
    #[serde(rename = "ec-p384")]
    EcP384,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    pub label: String,
    /// CKA_ID as hex.
    pub id: String,
    #[serde(rename = "type")]
    pub key_type: KeyType,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyGenerateOutputs {
    /// Where the public key is written (PEM). Must not exist.
    pub public_key: PathBuf,
}

/// `ceremony key generate CONFIG`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyGenerateConfig {
    pub hsm: HsmSection,
    pub key: KeySection,
    pub outputs: KeyGenerateOutputs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerSection {
    /// Label of the signing key pair in the token.
    pub label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectSection {
    pub common_name: String,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValiditySection {
    /// UTC, like 2026-12-01T00:00:00Z.
    pub not_before: String,
    pub not_after: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootProfile {
    /// The longest validity this profile allows.
    pub max_validity_days: u32,
    /// basicConstraints pathLenConstraint; absent means unconstrained.
    #[serde(default)]
    pub path_len: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateOutputs {
    /// Where the certificate is written (PEM). Must not exist.
    pub certificate: PathBuf,
}

/// `ceremony root CONFIG`: a self-signed root certificate signed inside the HSM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootConfig {
    pub hsm: HsmSection,
    pub key: SignerSection,
    pub subject: SubjectSection,
    pub validity: ValiditySection,
    pub profile: RootProfile,
    pub outputs: CertificateOutputs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    /// The issuer's certificate (PEM).
    pub certificate: PathBuf,
    /// Label of the issuer's key pair in the token; its public key must match the certificate's.
    pub key_label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrSection {
    /// The certificate signing request (PEM).
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntermediateProfile {
    pub max_validity_days: u32,
    /// basicConstraints pathLenConstraint of the intermediate.
    pub path_len: u8,
    #[serde(default)]
    pub crl_distribution_point: Option<String>,
    /// caIssuers URI for the Authority Information Access extension.
    #[serde(default)]
    pub authority_info_access: Option<String>,
}

/// `ceremony sign-csr CONFIG`: an intermediate CA certificate; the profile, not the CSR, decides
/// validity, extensions and path length.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignCsrConfig {
    pub hsm: HsmSection,
    pub issuer: IssuerSection,
    pub csr: CsrSection,
    pub validity: ValiditySection,
    pub profile: IntermediateProfile,
    pub outputs: CertificateOutputs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntry {
    /// The revoked certificate's serial number, hex.
    pub serial: String,
    pub revoked_at: String,
    pub reason: RevocationReason,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlSection {
    pub number: u64,
    pub this_update: String,
    pub next_update: String,
    #[serde(default)]
    pub revoked: Vec<RevokedEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlProfile {
    /// The longest thisUpdate..nextUpdate span this profile allows.
    pub max_span_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlOutputs {
    pub crl: PathBuf,
}

/// `ceremony crl CONFIG`: a CRL signed by the issuer's key in the HSM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlConfig {
    pub hsm: HsmSection,
    pub issuer: IssuerSection,
    pub crl: CrlSection,
    pub profile: CrlProfile,
    pub outputs: CrlOutputs,
}

/// Parse a step configuration; errors read `file:line:col: message`.
pub fn parse<T: for<'de> Deserialize<'de>>(text: &str, origin: &Path) -> anyhow::Result<T> {
    toml::from_str(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, col)
            })
            .unwrap_or((0, 0));
        anyhow::anyhow!("{}:{line}:{col}: {}", origin.display(), e.message().trim())
    })
}

pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<(T, String)> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
    Ok((parse(&text, path)?, digest))
}

/// Every output must not exist yet and its directory must: checked before the HSM is touched.
pub fn check_outputs(paths: &[&Path]) -> anyhow::Result<()> {
    for path in paths {
        if std::fs::symlink_metadata(path).is_ok() {
            anyhow::bail!("{} already exists; outputs are never overwritten", path.display());
        }
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            anyhow::bail!("{}: directory {} does not exist", path.display(), parent.display());
        }
    }
    Ok(())
}

/// Create an output with O_EXCL: never overwrite, even if it appeared since the check.
pub fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_positioned_errors() {
        let text = "[hsm]\ntoken_label = \"root\"\n\n[key]\nlabel = \"k\"\nid = \"01\"\ntype = \"rsa-4096\"\nextractable = true\n\n[outputs]\npublic_key = \"k.pem\"\n";
        let err = parse::<KeyGenerateConfig>(text, Path::new("step1.toml")).unwrap_err().to_string();
        assert!(err.starts_with("step1.toml:8:1: unknown field `extractable`"), "{err}");
        let err = parse::<KeyGenerateConfig>(
            &text.replace("rsa-4096", "rsa-1024").replace("extractable = true\n", ""),
            Path::new("s.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown variant `rsa-1024`"), "{err}");
    }
}
