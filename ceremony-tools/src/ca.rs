//! The ceremony's steps, one function each: key generation, a self-signed root, an intermediate
//! from a CSR, a cross-certificate, a CSR for a key in the HSM, and a CRL. Every step does all its
//! checks first (the step file, its outputs, its inputs and their pinned digests, the issuer
//! certificate, the profile's rules, the to-be-signed object's lint), then uses the HSM, then
//! verifies and lints what the HSM signed, then writes its outputs with O_EXCL. The caller opens
//! and verifies the transcript before calling a step, and records the outcome after.

use crate::config::{self, HsmSection, ValiditySection};
use crate::hsm::{self, Hsm, HsmSigner};
use crate::x509::{self, Signer, der, issuer::Issuer, keys, lint};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a step reaches the HSM: the module (when `--module` overrides the step's), the PIN and
/// whether a PIN on its final try may be used.
pub struct HsmAccess<'a> {
    pub module: Option<&'a Path>,
    pub pin: &'a dyn Fn(&str) -> Result<zeroize::Zeroizing<String>>,
    pub allow_final_pin_try: bool,
    /// Where the step's notes and warnings go.
    pub console: &'a dyn crate::console::Console,
}

impl std::fmt::Debug for HsmAccess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmAccess")
            .field("module", &self.module)
            .field("allow_final_pin_try", &self.allow_final_pin_try)
            .finish_non_exhaustive()
    }
}

impl HsmAccess<'_> {
    fn module(&self, section: &HsmSection) -> Result<PathBuf> {
        self.module
            .map(Path::to_path_buf)
            .or_else(|| section.module.clone())
            .context("no PKCS#11 module: give --module or set hsm.module in the step file")
    }

    /// Load the module, find the token (checking its PIN state), ask for the PIN and log in.
    pub fn session(&self, section: &HsmSection) -> Result<cryptoki::session::Session> {
        let module = self.module(section)?;
        let hsm = Hsm::open(&module)?;
        let slot = hsm.slot_for(&section.token_label, self.allow_final_pin_try, self.console)?;
        let pin = (self.pin)(&section.token_label)?;
        hsm.login(slot, &pin)
    }
}

/// An output a step wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub what: &'static str,
    pub path: PathBuf,
    /// What the digest is taken of: the DER inside the PEM.
    pub der: Vec<u8>,
}

/// What a step did, for its transcript record and for the screen.
#[derive(Debug, Default)]
pub struct Outcome {
    pub config_sha256: Option<String>,
    /// Input files and their SHA-256.
    pub inputs: BTreeMap<String, String>,
    pub outputs: Vec<Written>,
}

/// The steps a step file drives, by the name the command line and a plan give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    KeyGenerate,
    Root,
    SignCsr,
    Cross,
    Request,
    Crl,
}

/// What a step file says its step reads and writes, and the token it uses: known before
/// anything runs, so a plan can check its files before the HSM is touched.
#[derive(Debug, Clone)]
pub struct StepFiles {
    pub reads: Vec<PathBuf>,
    pub writes: Vec<PathBuf>,
    pub hsm: HsmSection,
}

impl Step {
    pub const ALL: [Step; 6] =
        [Step::KeyGenerate, Step::Root, Step::SignCsr, Step::Cross, Step::Request, Step::Crl];

    pub fn name(self) -> &'static str {
        match self {
            Step::KeyGenerate => "key generate",
            Step::Root => "root",
            Step::SignCsr => "sign-csr",
            Step::Cross => "cross",
            Step::Request => "request",
            Step::Crl => "crl",
        }
    }

    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Run this step from its file `config`, reading every file through `inputs`.
    pub fn run(self, access: &HsmAccess<'_>, inputs: &config::Inputs, config: &Path) -> Result<Outcome> {
        match self {
            Step::KeyGenerate => key_generate(access, inputs, config),
            Step::Root => root(access, inputs, config),
            Step::SignCsr => sign_csr(access, inputs, config),
            Step::Cross => cross(access, inputs, config),
            Step::Request => request(access, inputs, config),
            Step::Crl => crl(access, inputs, config),
        }
    }

    /// Parse `text` (the step file at `origin`) as this step's and say what it reads and writes.
    pub fn files(self, text: &str, origin: &Path) -> Result<StepFiles> {
        let issuer_reads = |issuer: &config::IssuerSection| {
            std::iter::once(issuer.certificate.clone())
                .chain(issuer.chain.iter().cloned())
                .collect::<Vec<_>>()
        };
        Ok(match self {
            Step::KeyGenerate => {
                let c: config::KeyGenerateConfig = config::parse(text, origin)?;
                StepFiles { reads: vec![], writes: vec![c.outputs.public_key], hsm: c.hsm }
            }
            Step::Root => {
                let c: config::RootConfig = config::parse(text, origin)?;
                StepFiles { reads: vec![], writes: vec![c.outputs.certificate], hsm: c.hsm }
            }
            Step::SignCsr => {
                let c: config::SignCsrConfig = config::parse(text, origin)?;
                let mut reads = issuer_reads(&c.issuer);
                reads.push(c.csr.path);
                StepFiles { reads, writes: vec![c.outputs.certificate], hsm: c.hsm }
            }
            Step::Cross => {
                let c: config::CrossConfig = config::parse(text, origin)?;
                let mut reads = issuer_reads(&c.issuer);
                reads.push(c.subject.certificate);
                StepFiles { reads, writes: vec![c.outputs.certificate], hsm: c.hsm }
            }
            Step::Request => {
                let c: config::RequestConfig = config::parse(text, origin)?;
                StepFiles { reads: vec![], writes: vec![c.outputs.csr], hsm: c.hsm }
            }
            Step::Crl => {
                let c: config::CrlConfig = config::parse(text, origin)?;
                StepFiles { reads: issuer_reads(&c.issuer), writes: vec![c.outputs.crl], hsm: c.hsm }
            }
        })
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn parse_time(text: &str, field: &str) -> Result<i64> {
    ceremony_os_timestamp::Timestamp::parse_rfc3339_utc(text)
        .map(|t| t.unix())
        .map_err(|e| anyhow!("{field}: {e}"))
}

/// The validity as Unix times, checked against the profile's limit.
fn checked_validity(validity: &ValiditySection, max_days: u32) -> Result<(i64, i64)> {
    let not_before = parse_time(&validity.not_before, "validity.not_before")?;
    let not_after = parse_time(&validity.not_after, "validity.not_after")?;
    if not_after <= not_before {
        bail!("validity.not_after must be after validity.not_before");
    }
    let days = (not_after - not_before) as f64 / 86_400.0;
    if days > f64::from(max_days) {
        bail!("the validity is {days:.0} days; the profile allows at most {max_days}");
    }
    Ok((not_before, not_after))
}

fn check_uri(field: &str, uri: &Option<String>) -> Result<()> {
    if let Some(uri) = uri {
        let host = uri.strip_prefix("http://").map(|r| r.split('/').next().unwrap_or(""));
        let ok = host.is_some_and(|h| {
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        }) && uri.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            bail!("profile.{field} {uri:?} is not an http:// URI with a host name (no spaces, ASCII only)");
        }
    }
    Ok(())
}

fn write(outcome: &mut Outcome, what: &'static str, path: &Path, label: &str, der: Vec<u8>) -> Result<()> {
    ceremony_os_media::write_new(path, der::pem(label, &der).as_bytes())?;
    outcome.outputs.push(Written { what, path: path.to_path_buf(), der });
    Ok(())
}

pub fn key_generate(access: &HsmAccess<'_>, inputs: &config::Inputs, config_path: &Path) -> Result<Outcome> {
    let (config, digest): (config::KeyGenerateConfig, String) = config::load(inputs, config_path)?;
    let output = config.outputs.public_key.clone();
    config::check_outputs(&[&output])?;
    let id = hex::decode(&config.key.id).map_err(|_| anyhow!("key.id {:?} is not hex", config.key.id))?;
    if id.is_empty() {
        bail!("key.id is empty");
    }
    let session = access.session(&config.hsm)?;
    let spki = hsm::generate(&session, &config.key.label, &id, config.key.key_type, access.console)?;
    let mut outcome = Outcome { config_sha256: Some(digest), ..Default::default() };
    write(&mut outcome, "public key", &output, "PUBLIC KEY", spki)?;
    Ok(outcome)
}

pub fn root(access: &HsmAccess<'_>, inputs: &config::Inputs, config_path: &Path) -> Result<Outcome> {
    let (config, digest): (config::RootConfig, String) = config::load(inputs, config_path)?;
    let output = config.outputs.certificate.clone();
    config::check_outputs(&[&output])?;
    let (not_before, not_after) = checked_validity(&config.validity, config.profile.max_validity_days)?;
    let subject = config.subject.to_der()?;

    let session = access.session(&config.hsm)?;
    let signer = HsmSigner::find(&session, &config.key.label, None)?;
    let key_id = keys::key_identifier(signer.spki())?;
    let serial = signer.random_serial()?;
    let tbs = der::tbs_certificate(&der::TbsCertificate {
        serial: serial.clone(),
        signature_algorithm: signer.algorithm(),
        issuer: subject.clone(),
        not_before,
        not_after,
        subject: subject.clone(),
        spki: signer.spki().to_vec(),
        extensions: der::CaExtensions {
            path_len: config.profile.path_len,
            subject_key_id: key_id.clone(),
            authority_key_id: key_id.clone(),
            crl_distribution_point: None,
            ca_issuers: None,
        },
    });
    let rules = lint::CertificateRules {
        serial: &serial,
        issuer_name: &subject,
        issuer_key_id: &key_id,
        subject_key_id: &key_id,
        path_len: config.profile.path_len,
        not_before,
        not_after,
        allowed_keys: &keys::default_allowed(),
    };
    let certificate = x509::sign_checked(&tbs, &signer, &|c| lint::certificate(c, &rules))
        .context("the root certificate")?;
    let mut outcome = Outcome { config_sha256: Some(digest), ..Default::default() };
    write(&mut outcome, "root certificate", &output, "CERTIFICATE", certificate)?;
    Ok(outcome)
}

/// A CA certificate for `subject` and `spki`, issued by `issuer` with the signer in the HSM:
/// the part the intermediate and the cross-certificate share.
struct Issuance<'a> {
    issuer: &'a Issuer,
    subject: Vec<u8>,
    spki: Vec<u8>,
    subject_key_id: Vec<u8>,
    not_before: i64,
    not_after: i64,
    profile: &'a config::CaProfile,
}

fn issue(issuance: &Issuance<'_>, signer: &HsmSigner<'_>) -> Result<Vec<u8>> {
    let serial = signer.random_serial()?;
    let tbs = der::tbs_certificate(&der::TbsCertificate {
        serial: serial.clone(),
        signature_algorithm: signer.algorithm(),
        issuer: issuance.issuer.subject.clone(),
        not_before: issuance.not_before,
        not_after: issuance.not_after,
        subject: issuance.subject.clone(),
        spki: issuance.spki.clone(),
        extensions: der::CaExtensions {
            path_len: Some(issuance.profile.path_len),
            subject_key_id: issuance.subject_key_id.clone(),
            authority_key_id: issuance.issuer.key_id.clone(),
            crl_distribution_point: issuance.profile.crl_distribution_point.clone(),
            ca_issuers: issuance.profile.authority_info_access.clone(),
        },
    });
    let rules = lint::CertificateRules {
        serial: &serial,
        issuer_name: &issuance.issuer.subject,
        issuer_key_id: &issuance.issuer.key_id,
        subject_key_id: &issuance.subject_key_id,
        path_len: Some(issuance.profile.path_len),
        not_before: issuance.not_before,
        not_after: issuance.not_after,
        allowed_keys: &issuance.profile.allowed_keys,
    };
    x509::sign_checked(&tbs, signer, &|c| lint::certificate(c, &rules))
}

/// The checks every CA issuance makes before the HSM: profile URIs, validity, the issuer's
/// certificate and its path length.
fn prepare_issuance(
    inputs: &config::Inputs,
    issuer_section: &config::IssuerSection,
    validity: &ValiditySection,
    profile: &config::CaProfile,
) -> Result<(Issuer, i64, i64)> {
    check_uri("crl_distribution_point", &profile.crl_distribution_point)?;
    check_uri("authority_info_access", &profile.authority_info_access)?;
    let (not_before, not_after) = checked_validity(validity, profile.max_validity_days)?;
    let issuer = Issuer::load(inputs, &issuer_section.certificate, &issuer_section.chain)?;
    issuer.may_issue_ca(Some(profile.path_len))?;
    issuer.covers(not_before, not_after, "the new certificate's validity")?;
    Ok((issuer, not_before, not_after))
}

pub fn sign_csr(access: &HsmAccess<'_>, inputs: &config::Inputs, config_path: &Path) -> Result<Outcome> {
    use x509_parser::prelude::{FromDer, X509CertificationRequest};
    let (config, digest): (config::SignCsrConfig, String) = config::load(inputs, config_path)?;
    let output = config.outputs.certificate.clone();
    config::check_outputs(&[&output])?;
    let (issuer, not_before, not_after) =
        prepare_issuance(inputs, &config.issuer, &config.validity, &config.profile)?;
    let csr_file = config::read_pinned(inputs, &config.csr.path, config.csr.sha256.as_deref())?;
    let csr_der = pem::parse(&csr_file)
        .ok()
        .filter(|p| p.tag() == "CERTIFICATE REQUEST")
        .map(|p| p.contents().to_vec())
        .ok_or_else(|| anyhow!("{}: not a PEM CERTIFICATE REQUEST", config.csr.path.display()))?;
    let (_, csr) = X509CertificationRequest::from_der(&csr_der)
        .map_err(|e| anyhow!("{}: {e}", config.csr.path.display()))?;
    // The key policy first: a key it refuses is named as such, not as a signature the
    // verifier would not check.
    let spki = csr.certification_request_info.subject_pki.raw.to_vec();
    keys::check(&spki, &config.profile.allowed_keys)
        .map_err(|e| anyhow!("{}: the CSR's key is {e}", config.csr.path.display()))?;
    csr.verify_signature().map_err(|e| {
        anyhow!(
            "{}: the CSR's signature does not verify ({e}): it was altered or not signed by its key",
            config.csr.path.display()
        )
    })?;
    if csr.requested_extensions().is_some_and(|mut e| e.next().is_some()) {
        access.console.say("note: the CSR requests extensions; they are ignored, the profile decides");
    }
    let issuance = Issuance {
        issuer: &issuer,
        // The subject exactly as the CSR encodes it: its RDNs, their order and string types.
        subject: csr.certification_request_info.subject.as_raw().to_vec(),
        subject_key_id: keys::key_identifier(&spki)?,
        spki,
        not_before,
        not_after,
        profile: &config.profile,
    };
    let session = access.session(&config.hsm)?;
    let signer = HsmSigner::find(&session, &config.issuer.key_label, Some(&issuer.spki))?;
    let certificate = issue(&issuance, &signer).context("the intermediate certificate")?;
    let mut outcome = Outcome {
        config_sha256: Some(digest),
        inputs: BTreeMap::from([
            (config.csr.path.display().to_string(), sha256_hex(&csr_file)),
            (config.issuer.certificate.display().to_string(), sha256_hex(&issuer.der)),
        ]),
        ..Default::default()
    };
    write(&mut outcome, "intermediate certificate", &output, "CERTIFICATE", certificate)?;
    Ok(outcome)
}

pub fn cross(access: &HsmAccess<'_>, inputs: &config::Inputs, config_path: &Path) -> Result<Outcome> {
    use x509_parser::prelude::*;
    let (config, digest): (config::CrossConfig, String) = config::load(inputs, config_path)?;
    let output = config.outputs.certificate.clone();
    config::check_outputs(&[&output])?;
    let (issuer, not_before, not_after) =
        prepare_issuance(inputs, &config.issuer, &config.validity, &config.profile)?;
    let file = config::read_pinned(inputs, &config.subject.certificate, config.subject.sha256.as_deref())?;
    let subject_der = ::pem::parse(&file)
        .ok()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.contents().to_vec())
        .ok_or_else(|| anyhow!("{}: not a PEM CERTIFICATE", config.subject.certificate.display()))?;
    // The CA to cross-certify must itself be a CA whose certificate verifies (self-signed).
    let subject_ca = Issuer::load(inputs, &config.subject.certificate, &[])
        .map_err(|e| anyhow!("the CA to cross-certify: {e}"))?;
    let (_, cert) = X509Certificate::from_der(&subject_der).map_err(|e| anyhow!("{e}"))?;
    keys::check(cert.public_key().raw, &config.profile.allowed_keys)
        .map_err(|e| anyhow!("{}: its key is {e}", config.subject.certificate.display()))?;
    let issuance = Issuance {
        issuer: &issuer,
        subject: subject_ca.subject.clone(),
        spki: subject_ca.spki.clone(),
        // Its own key identifier, so chains built through either certificate agree.
        subject_key_id: subject_ca.key_id.clone(),
        not_before,
        not_after,
        profile: &config.profile,
    };
    let session = access.session(&config.hsm)?;
    let signer = HsmSigner::find(&session, &config.issuer.key_label, Some(&issuer.spki))?;
    let certificate = issue(&issuance, &signer).context("the cross-certificate")?;
    let mut outcome = Outcome {
        config_sha256: Some(digest),
        inputs: BTreeMap::from([
            (config.subject.certificate.display().to_string(), sha256_hex(&file)),
            (config.issuer.certificate.display().to_string(), sha256_hex(&issuer.der)),
        ]),
        ..Default::default()
    };
    write(&mut outcome, "cross-certificate", &output, "CERTIFICATE", certificate)?;
    Ok(outcome)
}

pub fn request(access: &HsmAccess<'_>, inputs: &config::Inputs, config_path: &Path) -> Result<Outcome> {
    let (config, digest): (config::RequestConfig, String) = config::load(inputs, config_path)?;
    let output = config.outputs.csr.clone();
    config::check_outputs(&[&output])?;
    let subject = config.subject.to_der()?;
    let session = access.session(&config.hsm)?;
    let signer = HsmSigner::find(&session, &config.key.label, None)?;
    let info = der::certification_request_info(&subject, signer.spki());
    let csr = x509::sign_checked(&info, &signer, &|c| lint::csr(c, &subject, signer.spki()))
        .context("the certificate signing request")?;
    let mut outcome = Outcome { config_sha256: Some(digest), ..Default::default() };
    write(&mut outcome, "certificate signing request", &output, "CERTIFICATE REQUEST", csr)?;
    Ok(outcome)
}

pub fn crl(access: &HsmAccess<'_>, inputs: &config::Inputs, config_path: &Path) -> Result<Outcome> {
    let (config, digest): (config::CrlConfig, String) = config::load(inputs, config_path)?;
    let output = config.outputs.crl.clone();
    config::check_outputs(&[&output])?;
    let this_update = parse_time(&config.crl.this_update, "crl.this_update")?;
    let next_update = parse_time(&config.crl.next_update, "crl.next_update")?;
    if next_update <= this_update {
        bail!("crl.next_update must be after crl.this_update");
    }
    let span = (next_update - this_update) as f64 / 86_400.0;
    if span > f64::from(config.profile.max_span_days) {
        bail!("the CRL spans {span:.0} days; the profile allows at most {}", config.profile.max_span_days);
    }
    if config.crl.number == 0 {
        bail!("crl.number must be at least 1");
    }
    let issuer = Issuer::load(inputs, &config.issuer.certificate, &config.issuer.chain)?;
    if !issuer.crl_sign {
        bail!("issuer certificate {}: its keyUsage does not allow cRLSign", issuer.path.display());
    }
    issuer.covers(this_update, next_update, "thisUpdate and nextUpdate")?;
    let mut revoked = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, entry) in config.crl.revoked.iter().enumerate() {
        let serial = x509::parse_serial(&entry.serial).map_err(|e| anyhow!("crl.revoked[{i}]: {e}"))?;
        if !seen.insert(serial.clone()) {
            bail!("crl.revoked[{i}]: serial {} is listed twice", entry.serial);
        }
        let at = parse_time(&entry.revoked_at, &format!("crl.revoked[{i}].revoked_at"))?;
        if at > this_update {
            bail!("crl.revoked[{i}].revoked_at is after crl.this_update");
        }
        revoked.push(der::Revoked { serial, revoked_at: at, reason: entry.reason.code() });
    }
    let serials: Vec<Vec<u8>> = revoked.iter().map(|r| r.serial.clone()).collect();

    let session = access.session(&config.hsm)?;
    let signer = HsmSigner::find(&session, &config.issuer.key_label, Some(&issuer.spki))?;
    let tbs = der::tbs_crl(&der::TbsCrl {
        signature_algorithm: signer.algorithm(),
        issuer: issuer.subject.clone(),
        this_update,
        next_update,
        revoked,
        authority_key_id: issuer.key_id.clone(),
        number: config.crl.number,
    });
    let rules = lint::CrlRules {
        issuer_name: &issuer.subject,
        issuer_key_id: &issuer.key_id,
        this_update,
        next_update,
        number: config.crl.number,
        serials: &serials,
    };
    let list = x509::sign_checked(&tbs, &signer, &|c| lint::crl(c, &rules)).context("the CRL")?;
    let mut outcome = Outcome {
        config_sha256: Some(digest),
        inputs: BTreeMap::from([(config.issuer.certificate.display().to_string(), sha256_hex(&issuer.der))]),
        ..Default::default()
    };
    write(&mut outcome, "CRL", &output, "X509 CRL", list)?;
    Ok(outcome)
}

/// `hsm list`: tokens and objects; with `login`, the objects of that one token too.
pub fn list(access: &HsmAccess<'_>, login_token: Option<&str>) -> Result<String> {
    let module = access.module.context("hsm list needs --module")?;
    let hsm = Hsm::open(module)?;
    match login_token {
        Some(token) => {
            hsm.slot_for(token, access.allow_final_pin_try, access.console)?;
            let pin = (access.pin)(token)?;
            hsm.list(Some((token, &pin)), access.console)
        }
        None => hsm.list(None, access.console),
    }
}
