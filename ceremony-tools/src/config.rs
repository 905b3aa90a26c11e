//! Ceremony step configurations: one reviewed TOML file per step, parsed strictly (unknown keys
//! are errors, with file, line and column), and the rules for outputs: checked before the HSM is
//! touched, created with O_EXCL, never overwritten.

use crate::x509::SubjectSection;
use crate::x509::keys::KeyKind;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSection {
    /// The PKCS#11 module (`--module` overrides it).
    pub module: Option<PathBuf>,
    /// Label of the token to use (exactly one initialized token must have it).
    pub token_label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    pub label: String,
    /// CKA_ID as hex; no other object of the token may have it.
    pub id: String,
    /// What the token generates: any kind but rsa-2048, which is accepted in a CSR from
    /// elsewhere but too short for a key made to last.
    #[serde(rename = "type", deserialize_with = "generated_kind")]
    pub key_type: KeyKind,
}

fn generated_kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<KeyKind, D::Error> {
    match KeyKind::deserialize(d)? {
        KeyKind::Rsa2048 => Err(serde::de::Error::custom(
            "rsa-2048 is not generated in a ceremony: use rsa-3072, rsa-4096, ec-p256 or ec-p384",
        )),
        kind => Ok(kind),
    }
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
    /// Label of the key pair in the token.
    pub label: String,
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
    /// Certificates that may have signed the issuer's (when it is not self-signed): its
    /// signature must verify with one of them.
    #[serde(default)]
    pub chain: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrSection {
    /// The certificate signing request (PEM).
    pub path: PathBuf,
    /// SHA-256 (hex) the CSR file must have: a swapped CSR is refused before the HSM is used.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// The profile of a CA certificate issued to another key (an intermediate, a cross-certificate).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaProfile {
    pub max_validity_days: u32,
    /// basicConstraints pathLenConstraint of the new CA certificate.
    pub path_len: u8,
    /// An http:// URI.
    #[serde(default)]
    pub crl_distribution_point: Option<String>,
    /// caIssuers URI (http://) for the Authority Information Access extension.
    #[serde(default)]
    pub authority_info_access: Option<String>,
    /// The kinds of key the profile certifies [default: rsa-2048, rsa-3072, rsa-4096, ec-p256,
    /// ec-p384; RSA only with exponent 65537].
    #[serde(default = "crate::x509::keys::default_allowed")]
    pub allowed_keys: Vec<KeyKind>,
}

/// `ceremony sign-csr CONFIG`: an intermediate CA certificate; the profile, not the CSR, decides
/// validity, extensions and path length; the subject is the CSR's, byte for byte.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignCsrConfig {
    pub hsm: HsmSection,
    pub issuer: IssuerSection,
    pub csr: CsrSection,
    pub validity: ValiditySection,
    pub profile: CaProfile,
    pub outputs: CertificateOutputs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossSubjectSection {
    /// The certificate of the CA to cross-certify: its subject and public key (and subject key
    /// identifier) go into the cross-certificate.
    pub certificate: PathBuf,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// `ceremony cross CONFIG`: a cross-certificate for an existing CA, signed by this CA's key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossConfig {
    pub hsm: HsmSection,
    pub issuer: IssuerSection,
    pub subject: CrossSubjectSection,
    pub validity: ValiditySection,
    pub profile: CaProfile,
    pub outputs: CertificateOutputs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestOutputs {
    /// Where the certificate signing request is written (PEM). Must not exist.
    pub csr: PathBuf,
}

/// `ceremony request CONFIG`: a CSR for a key in the HSM (an intermediate whose key is made in its
/// own HSM), to be signed by another CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    pub hsm: HsmSection,
    pub key: SignerSection,
    pub subject: SubjectSection,
    pub outputs: RequestOutputs,
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

impl RevocationReason {
    /// The CRLReason code (RFC 5280 5.3.1).
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntry {
    /// Hex, as printed by openssl (`8a01`, `00:8A:01`, `0x8a01` are the same serial).
    pub serial: String,
    pub revoked_at: String,
    pub reason: RevocationReason,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlSection {
    /// crlNumber: must grow from one CRL to the next.
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

pub fn load<T: for<'de> Deserialize<'de>>(inputs: &Inputs, path: &Path) -> anyhow::Result<(T, String)> {
    let text = String::from_utf8(inputs.read(path)?)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))?;
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

/// Read an input file whose SHA-256 the step pins, if it does.
pub fn read_pinned(inputs: &Inputs, path: &Path, pinned: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let bytes = inputs.read(path)?;
    if let Some(expected) = pinned {
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            anyhow::bail!(
                "{} has SHA-256 {actual}, the step expects {expected}: it is not the reviewed file",
                path.display()
            );
        }
    }
    Ok(bytes)
}

/// A path a plan or step file names: relative, without `.` or `..`, so that it means the same
/// file in the plan's directory and in the work directory, and cannot leave either.
pub fn plain_relative(text: &str, what: &str) -> anyhow::Result<PathBuf> {
    let plain = !text.contains('\\')
        && !text.chars().any(char::is_control)
        && text.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    if !plain {
        anyhow::bail!("{what} {text:?} must be a relative path without `.`, `..`, `//` or a trailing `/`");
    }
    Ok(PathBuf::from(text))
}

/// Read a file only if it is a regular file (opened without blocking, then checked, so a FIFO
/// or device named as an input cannot hang or feed the tool).
pub fn read_regular(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = ceremony_os_media::open_regular(path).map_err(|e| anyhow::anyhow!("cannot read {e}"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

/// Refuse a relative path any of whose components (the file itself included) is a symbolic
/// link: a work-directory path must name a file in the work directory, never lead elsewhere.
pub fn refuse_symlinks(rel: &Path) -> anyhow::Result<()> {
    for ancestor in rel.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        if std::fs::symlink_metadata(ancestor).is_ok_and(|m| m.file_type().is_symlink()) {
            anyhow::bail!(
                "{} is a symbolic link; files of the ceremony must be in the work directory itself (nothing was done)",
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// A PEM file the ceremony wrote: its bytes and the DER inside, refusing anything but exactly
/// that PEM (one block, as the tool writes it): text or blocks around it would go unchecked.
pub fn read_own_pem(path: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    refuse_symlinks(path)?;
    let bytes = read_regular(path)?;
    let der = own_pem_der(&bytes, path)?;
    Ok((bytes, der))
}

/// The DER of `bytes` if they are exactly one PEM block as the tool writes it.
fn own_pem_der(bytes: &[u8], path: &Path) -> anyhow::Result<Vec<u8>> {
    let blocks = ::pem::parse_many(bytes).map_err(|e| anyhow::anyhow!("{}: not PEM: {e}", path.display()))?;
    let [block] = blocks.as_slice() else {
        anyhow::bail!("{}: holds {} PEM blocks, the ceremony wrote one", path.display(), blocks.len());
    };
    if crate::x509::der::pem(block.tag(), block.contents()).as_bytes() != bytes {
        anyhow::bail!(
            "{}: holds more than the PEM block the ceremony wrote (text around it, or another encoding)",
            path.display()
        );
    }
    Ok(block.contents().to_vec())
}

/// What a file a plan step reads was checked to hold.
#[derive(Debug, Clone)]
pub enum Checked {
    /// A plan file (step file, pinned input): exactly these bytes.
    Bytes(Vec<u8>),
    /// An earlier step's output: exactly the PEM it wrote, whose DER has this SHA-256.
    OwnPem { der_sha256: String },
}

/// The files a step may read and what each was checked to hold: passed to the step as a value,
/// so that every read it makes is compared on the very bytes it then uses.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// A single command outside a plan: any regular file may be read.
    Open,
    /// A plan step: only these files, each exactly as checked; symbolic links refused.
    Checked(std::collections::BTreeMap<std::path::PathBuf, Checked>),
}

impl Inputs {
    /// Read a file a step uses (its step file, a CSR, an issuer certificate): a regular file,
    /// and, during a plan step, exactly what the plan checked it to be.
    pub fn read(&self, path: &Path) -> anyhow::Result<Vec<u8>> {
        let Inputs::Checked(reads) = self else { return read_regular(path) };
        refuse_symlinks(path)?;
        let bytes = read_regular(path)?;
        match reads.get(path) {
            None => {
                anyhow::bail!("{} is not a file this step of the plan was checked to read", path.display())
            }
            Some(Checked::Bytes(expected)) if *expected != bytes => anyhow::bail!(
                "{} has SHA-256 {} now, the plan checked {}: it changed (nothing was done)",
                path.display(),
                crate::ca::sha256_hex(&bytes),
                crate::ca::sha256_hex(expected)
            ),
            Some(Checked::OwnPem { der_sha256 }) => {
                let actual = crate::ca::sha256_hex(&own_pem_der(&bytes, path)?);
                if actual != *der_sha256 {
                    anyhow::bail!(
                        "{} has SHA-256 {actual} (DER), the transcript recorded {der_sha256}: it was replaced (nothing was done)",
                        path.display()
                    );
                }
            }
            Some(Checked::Bytes(_)) => {}
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn during_a_plan_step_reads_are_compared_on_the_bytes_used() {
        let dir = tempfile::tempdir().unwrap();
        let step = dir.path().join("step.toml");
        let cert = dir.path().join("root.pem");
        let der = b"not really DER".to_vec();
        std::fs::write(&step, b"reviewed").unwrap();
        std::fs::write(&cert, crate::x509::der::pem("CERTIFICATE", &der)).unwrap();
        let reads = || {
            std::collections::BTreeMap::from([
                (step.clone(), Checked::Bytes(b"reviewed".to_vec())),
                (cert.clone(), Checked::OwnPem { der_sha256: crate::ca::sha256_hex(&der) }),
            ])
        };
        let checked = Inputs::Checked(reads());
        assert_eq!(checked.read(&step).unwrap(), b"reviewed");
        assert!(checked.read(&cert).is_ok());
        let other = dir.path().join("other.csr");
        std::fs::write(&other, b"x").unwrap();
        let err = checked.read(&other).unwrap_err().to_string();
        assert!(err.contains("is not a file this step of the plan was checked to read"), "{err}");
        std::fs::write(&step, b"edited").unwrap();
        let mut appended = crate::x509::der::pem("CERTIFICATE", &der).into_bytes();
        appended.extend_from_slice(b"trailing text\n");
        std::fs::write(&cert, appended).unwrap();
        let checked = Inputs::Checked(reads());
        assert!(checked.read(&step).unwrap_err().to_string().contains("it changed"));
        assert!(checked.read(&cert).unwrap_err().to_string().contains("more than the PEM block"));
        // Outside a plan step nothing is restricted.
        assert_eq!(Inputs::Open.read(&step).unwrap(), b"edited");
    }

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
        let err = parse::<KeyGenerateConfig>(
            &text.replace("rsa-4096", "rsa-2048").replace("extractable = true\n", ""),
            Path::new("s.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("s.toml:7:8: rsa-2048 is not generated in a ceremony"), "{err}");
    }
}
