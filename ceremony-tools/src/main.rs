//! `ceremony`: the tool the ceremony administrator runs on the air-gapped laptop. It talks to the
//! HSM through PKCS#11, splits secrets among keyholders, and appends every command to a
//! hash-chained transcript whose head the witnesses write down.

mod config;
mod der;
mod hsm;
mod shamir;
mod transcript;
mod x509;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Key-ceremony tool for HSMs over PKCS#11, with Shamir backups and a hash-chained transcript.
///
/// Every command except `transcript verify` appends a record to the transcript and prints its
/// new head hash as hex and PGP words, for the witnesses to write down. PINs are read from the
/// terminal without echo, or from --pin-fd; never from the command line.
#[derive(Parser, Debug)]
#[command(name = "ceremony", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The transcript (JSON lines, append-only).
    #[arg(long, global = true, env = "CEREMONY_TRANSCRIPT", default_value = "ceremony-transcript.jsonl")]
    transcript: PathBuf,
    /// PKCS#11 module (overrides the step configuration).
    #[arg(long, global = true, value_name = "PATH")]
    module: Option<PathBuf>,
    /// Read the PIN from this file descriptor (first line) instead of the terminal.
    #[arg(long, global = true, value_name = "FD")]
    pin_fd: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// HSM inspection.
    #[command(subcommand)]
    Hsm(HsmCommand),
    /// Key management.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Issue a self-signed root CA certificate with a key in the HSM: serial from the HSM's RNG,
    /// validity bounded by the profile, basicConstraints CA and keyUsage keyCertSign+cRLSign
    /// (both critical), subject key identifier. Verified and linted after signing.
    Root {
        /// The step configuration (TOML: [hsm], [key], [subject], [validity], [profile], [outputs]).
        config: PathBuf,
    },
    /// Issue an intermediate CA certificate for a CSR. The CSR's signature is verified; its
    /// subject and key are used, nothing else: the profile decides validity, path length, CRL
    /// distribution point and AIA. The signing key is found by label and must match the issuer
    /// certificate's public key.
    SignCsr {
        /// The step configuration (TOML: [hsm], [issuer], [csr], [validity], [profile], [outputs]).
        config: PathBuf,
    },
    /// Sign a CRL with the issuer's key: thisUpdate/nextUpdate within the issuer's validity and at
    /// most the profile's span, revoked serials with reasons; verified after signing.
    Crl {
        /// The step configuration (TOML: [hsm], [issuer], [crl], [profile], [outputs]).
        config: PathBuf,
    },
    /// k-of-n secret sharing (for example a token PIN among keyholders).
    #[command(subcommand)]
    Shamir(ShamirCommand),
    /// The transcript.
    #[command(subcommand)]
    Transcript(TranscriptCommand),
}

#[derive(Subcommand, Debug)]
enum HsmCommand {
    /// Slots, tokens and objects (with the protection attributes of keys). With a PIN, private
    /// objects too.
    List {
        /// Token whose objects need a login; without it only public objects are listed.
        #[arg(long)]
        login: bool,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Generate a key pair inside the HSM (RSA 3072/4096, EC P-256/P-384): sensitive, never
    /// extractable; write the public key as PEM and print its SPKI SHA-256.
    Generate {
        /// The step configuration (TOML: [hsm], [key], [outputs]).
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ShamirCommand {
    /// Split a secret (read without echo, or from --secret-fd) into N shares, K of which recover it.
    Split(SplitArgs),
    /// Recover a secret from K shares typed or piped in, one per line.
    Combine,
}

#[derive(Args, Debug)]
struct SplitArgs {
    #[arg(long, short = 'k')]
    threshold: u32,
    #[arg(long, short = 'n')]
    shares: u32,
    /// Read the secret from this file descriptor instead of the terminal.
    #[arg(long, value_name = "FD")]
    secret_fd: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum TranscriptCommand {
    /// Check the chain; name the first record that was edited, removed, inserted or moved.
    Verify {
        /// The head hash the witnesses wrote down: records appended after it are reported.
        #[arg(long, value_name = "HEX")]
        head: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(&cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What a command did, for its transcript record.
#[derive(Default)]
struct Effects {
    config_sha256: Option<String>,
    inputs: BTreeMap<String, String>,
    outputs: BTreeMap<String, String>,
}

fn run(cli: &Cli) -> Result<()> {
    let (name, result) = match &cli.command {
        Command::Transcript(TranscriptCommand::Verify { head }) => {
            return verify_transcript(&cli.transcript, head.as_deref());
        }
        Command::Hsm(HsmCommand::List { login }) => ("hsm list", hsm_list(cli, *login)),
        Command::Key(KeyCommand::Generate { config }) => ("key generate", key_generate(cli, config)),
        Command::Root { config } => ("root", root(cli, config)),
        Command::SignCsr { config } => ("sign-csr", sign_csr(cli, config)),
        Command::Crl { config } => ("crl", crl(cli, config)),
        Command::Shamir(ShamirCommand::Split(args)) => ("shamir split", shamir_split(args)),
        Command::Shamir(ShamirCommand::Combine) => ("shamir combine", shamir_combine()),
    };
    let (effects, outcome) = match &result {
        Ok(effects) => (effects, "ok".to_string()),
        Err(e) => (&Effects::default(), format!("error: {e:#}")),
    };
    let record = transcript::Record {
        seq: 0,
        prev: String::new(),
        time: now_utc(),
        command: name.into(),
        config_sha256: effects.config_sha256.clone(),
        inputs: effects.inputs.clone(),
        outputs: effects.outputs.clone(),
        outcome,
    };
    let head = transcript::append(&cli.transcript, record).context("appending to the transcript")?;
    eprintln!(
        "transcript {} head:\n  sha256 {head}\n  words  {}",
        cli.transcript.display(),
        ceremony_os_pgpwords::format_hex(&head).replace('\n', "\n         ")
    );
    result.map(|_| ())
}

/// The laptop's clock, for the transcript only (the record says when the step happened).
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    ceremony_os_definition::Timestamp::from_unix(secs).to_string()
}

fn read_fd_line(fd: u32, what: &str) -> Result<String> {
    let path = format!("/proc/self/fd/{fd}");
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot read the {what} from file descriptor {fd}"))?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line)?;
    let value = line.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        bail!("the {what} read from file descriptor {fd} is empty");
    }
    Ok(value)
}

fn read_pin(cli: &Cli, token: &str) -> Result<String> {
    match cli.pin_fd {
        Some(fd) => read_fd_line(fd, "PIN"),
        None => rpassword::prompt_password(format!("PIN for token {token:?}: "))
            .context("no terminal to ask for the PIN on: use --pin-fd"),
    }
}

fn module_for(cli: &Cli, configured: Option<&Path>) -> Result<PathBuf> {
    cli.module
        .clone()
        .or_else(|| configured.map(Path::to_path_buf))
        .context("no PKCS#11 module: give --module or set hsm.module in the configuration")
}

/// Load the step's PKCS#11 module, find its token by label and log in with the PIN.
fn open_session(cli: &Cli, section: &config::HsmSection) -> Result<cryptoki::session::Session> {
    let module = module_for(cli, section.module.as_deref())?;
    let token = hsm::Hsm::open(&module)?;
    let slot = token.slot_for(&section.token_label)?;
    let pin = read_pin(cli, &section.token_label)?;
    token.login(slot, &pin)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn hsm_list(cli: &Cli, login: bool) -> Result<Effects> {
    let module = module_for(cli, None)?;
    let hsm = hsm::Hsm::open(&module)?;
    let pin = if login { Some(read_pin(cli, "any")?) } else { None };
    write!(std::io::stdout(), "{}", hsm.list(pin.as_deref())?)?;
    Ok(Effects::default())
}

fn key_generate(cli: &Cli, config_path: &Path) -> Result<Effects> {
    let (config, digest): (config::KeyGenerateConfig, String) = config::load(config_path)?;
    let public_key_path = config.outputs.public_key.clone();
    config::check_outputs(&[&public_key_path])?;
    let session = open_session(cli, &config.hsm)?;
    let spki = hsm::generate(&session, &config.key)?;
    let spki_sha256 = sha256_hex(&spki);
    let written = config::write_new(&public_key_path, der::pem("PUBLIC KEY", &spki).as_bytes())?;
    eprintln!(
        "generated {:?} in token {:?}; public key written to {}\n  SPKI sha256 {spki_sha256}\n  words       {}",
        config.key.label,
        config.hsm.token_label,
        public_key_path.display(),
        ceremony_os_pgpwords::format_hex(&spki_sha256).replace('\n', "\n              ")
    );
    Ok(Effects {
        config_sha256: Some(digest),
        inputs: BTreeMap::new(),
        outputs: BTreeMap::from([(public_key_path.display().to_string(), written)]),
    })
}

fn parse_time(text: &str, field: &str) -> Result<i64> {
    ceremony_os_definition::Timestamp::parse_rfc3339_utc(text)
        .map(|t| t.unix())
        .map_err(|e| anyhow::anyhow!("{field}: {e}"))
}

/// The validity as Unix times, checked against the profile's limit.
fn checked_validity(validity: &config::ValiditySection, max_days: u32) -> Result<(i64, i64)> {
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

fn print_written(what: &str, path: &Path, der: &[u8]) {
    let sha256 = sha256_hex(der);
    eprintln!(
        "{what} written to {}\n  sha256 {sha256}\n  words  {}",
        path.display(),
        ceremony_os_pgpwords::format_hex(&sha256).replace('\n', "\n         ")
    );
}

fn sign_csr(cli: &Cli, config_path: &Path) -> Result<Effects> {
    use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};
    let (config, digest): (config::SignCsrConfig, String) = config::load(config_path)?;
    let output = config.outputs.certificate.clone();
    config::check_outputs(&[&output])?;
    let (not_before, not_after) = checked_validity(&config.validity, config.profile.max_validity_days)?;
    let issuer_cert = x509::IssuerCertificate::load(&config.issuer.certificate)?;
    if not_before < issuer_cert.not_before || not_after > issuer_cert.not_after {
        bail!("the validity must lie within the issuer certificate's");
    }
    let csr_der = x509::read_pem(&config.csr.path, "CERTIFICATE REQUEST")?;
    let (_, csr) = X509CertificationRequest::from_der(&csr_der)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.csr.path.display()))?;
    csr.verify_signature().map_err(|e| {
        anyhow::anyhow!(
            "{}: the CSR's signature does not verify ({e}): it was altered or not signed by its key",
            config.csr.path.display()
        )
    })?;
    if csr.requested_extensions().is_some_and(|mut e| e.next().is_some()) {
        eprintln!("note: the CSR requests extensions; they are ignored, the profile decides");
    }
    let subject = x509::subject_from_csr(&csr.certification_request_info.subject)?;
    let subject_spki = csr.certification_request_info.subject_pki.raw.to_vec();
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(&subject_spki)
        .map_err(|e| anyhow::anyhow!("the CSR's public key: {e}"))?;

    let session = open_session(cli, &config.hsm)?;
    let issuer_spki = &issuer_cert.spki;
    let signer = x509::find_signer(&session, &config.issuer.key_label, Some(issuer_spki))?;
    let serial = x509::random_serial(&session)?;
    let subject_key_id = x509::key_identifier(&subject_spki)?;

    let mut params = rcgen::CertificateParams::default();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before)?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after)?;
    params.distinguished_name = subject;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(config.profile.path_len));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(subject_key_id.clone());
    params.use_authority_key_identifier_extension = true;
    if let Some(uri) = &config.profile.crl_distribution_point {
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint { uris: vec![uri.clone()] }];
    }
    if let Some(uri) = &config.profile.authority_info_access {
        params.custom_extensions.push(x509::authority_info_access(uri));
    }
    let issuer = issuer_cert.issuer(&signer)?;
    let certificate =
        params.signed_by(&subject_key, &issuer).context("signing the certificate in the HSM")?;
    x509::check_issued(
        certificate.der(),
        issuer_spki,
        &x509::Expectations {
            serial,
            not_before,
            not_after,
            path_len: Some(u32::from(config.profile.path_len)),
            subject_key_id,
        },
    )?;
    let (_, issued) = X509Certificate::from_der(certificate.der()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if issued.issuer().as_raw() != issuer_cert.subject.as_slice() {
        bail!("the certificate's issuer name is not the issuer certificate's subject");
    }
    let written = config::write_new(&output, certificate.pem().as_bytes())?;
    print_written("intermediate certificate", &output, certificate.der());
    Ok(Effects {
        config_sha256: Some(digest),
        inputs: BTreeMap::from([
            (config.csr.path.display().to_string(), sha256_hex(&csr_der)),
            (config.issuer.certificate.display().to_string(), sha256_hex(&issuer_cert.der)),
        ]),
        outputs: BTreeMap::from([(output.display().to_string(), written)]),
    })
}

fn crl(cli: &Cli, config_path: &Path) -> Result<Effects> {
    let (config, digest): (config::CrlConfig, String) = config::load(config_path)?;
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
    let issuer_cert = x509::IssuerCertificate::load(&config.issuer.certificate)?;
    if this_update < issuer_cert.not_before || next_update > issuer_cert.not_after {
        bail!("thisUpdate and nextUpdate must lie within the issuer certificate's validity");
    }
    let mut revoked = Vec::new();
    let mut serials = Vec::new();
    for (i, entry) in config.crl.revoked.iter().enumerate() {
        let serial = hex::decode(entry.serial.trim_start_matches("0x"))
            .map_err(|_| anyhow::anyhow!("crl.revoked[{i}].serial is not hex"))?;
        let at = parse_time(&entry.revoked_at, &format!("crl.revoked[{i}].revoked_at"))?;
        use config::RevocationReason as R;
        let reason = match entry.reason {
            R::Unspecified => rcgen::RevocationReason::Unspecified,
            R::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            R::CaCompromise => rcgen::RevocationReason::CaCompromise,
            R::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            R::Superseded => rcgen::RevocationReason::Superseded,
            R::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            R::CertificateHold => rcgen::RevocationReason::CertificateHold,
            R::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        };
        revoked.push(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&serial),
            revocation_time: time::OffsetDateTime::from_unix_timestamp(at)?,
            reason_code: Some(reason),
            invalidity_date: None,
        });
        serials.push(serial);
    }

    let session = open_session(cli, &config.hsm)?;
    let issuer_spki = &issuer_cert.spki;
    let signer = x509::find_signer(&session, &config.issuer.key_label, Some(issuer_spki))?;
    let issuer = issuer_cert.issuer(&signer)?;
    let params = rcgen::CertificateRevocationListParams {
        this_update: time::OffsetDateTime::from_unix_timestamp(this_update)?,
        next_update: time::OffsetDateTime::from_unix_timestamp(next_update)?,
        crl_number: rcgen::SerialNumber::from(config.crl.number.to_be_bytes().to_vec()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: rcgen::KeyIdMethod::PreSpecified(x509::key_identifier(issuer_spki)?),
    };
    let list = params.signed_by(&issuer).context("signing the CRL in the HSM")?;
    x509::check_crl(list.der(), issuer_spki, &serials)?;
    let written = config::write_new(&output, list.pem().context("PEM encoding the CRL")?.as_bytes())?;
    print_written("CRL", &output, list.der());
    Ok(Effects {
        config_sha256: Some(digest),
        inputs: BTreeMap::from([(
            config.issuer.certificate.display().to_string(),
            sha256_hex(&issuer_cert.der),
        )]),
        outputs: BTreeMap::from([(output.display().to_string(), written)]),
    })
}

fn root(cli: &Cli, config_path: &Path) -> Result<Effects> {
    let (config, digest): (config::RootConfig, String) = config::load(config_path)?;
    let output = config.outputs.certificate.clone();
    config::check_outputs(&[&output])?;
    // Profile rules, before the HSM is touched.
    let (not_before, not_after) = checked_validity(&config.validity, config.profile.max_validity_days)?;

    let session = open_session(cli, &config.hsm)?;
    let signer = x509::find_signer(&session, &config.key.label, None)?;
    let serial = x509::random_serial(&session)?;
    let subject_key_id = x509::key_identifier(&signer.spki)?;

    let mut params = rcgen::CertificateParams::default();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before)?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after)?;
    let mut name = rcgen::DistinguishedName::new();
    if let Some(country) = &config.subject.country {
        name.push(rcgen::DnType::CountryName, country.as_str());
    }
    if let Some(organization) = &config.subject.organization {
        name.push(rcgen::DnType::OrganizationName, organization.as_str());
    }
    name.push(rcgen::DnType::CommonName, config.subject.common_name.as_str());
    params.distinguished_name = name;
    params.is_ca = rcgen::IsCa::Ca(match config.profile.path_len {
        Some(n) => rcgen::BasicConstraints::Constrained(n),
        None => rcgen::BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(subject_key_id.clone());
    let certificate = params.self_signed(&signer).context("signing the root certificate in the HSM")?;

    x509::check_issued(
        certificate.der(),
        &signer.spki,
        &x509::Expectations {
            serial,
            not_before,
            not_after,
            path_len: config.profile.path_len.map(u32::from),
            subject_key_id,
        },
    )?;
    let written = config::write_new(&output, certificate.pem().as_bytes())?;
    print_written("root certificate", &output, certificate.der());
    Ok(Effects {
        config_sha256: Some(digest),
        inputs: BTreeMap::new(),
        outputs: BTreeMap::from([(output.display().to_string(), written)]),
    })
}

fn shamir_split(args: &SplitArgs) -> Result<Effects> {
    let secret = match args.secret_fd {
        Some(fd) => read_fd_line(fd, "secret")?,
        None => {
            let first =
                rpassword::prompt_password("secret to split: ").context("no terminal: use --secret-fd")?;
            let again = rpassword::prompt_password("the same secret again: ")?;
            if first != again {
                bail!("the two entries differ");
            }
            first
        }
    };
    let shares = shamir::split(secret.as_bytes(), args.threshold, args.shares)?;
    let mut out = std::io::stdout();
    for share in &shares {
        writeln!(out, "{}", share.to_text())?;
    }
    eprintln!("{} shares written, one per line; any {} recover the secret", shares.len(), args.threshold);
    Ok(Effects::default())
}

fn shamir_combine() -> Result<Effects> {
    let mut shares = Vec::new();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        shares.push(shamir::TextShare::parse(&line, i + 1)?);
    }
    let secret = shamir::combine(&shares)?;
    std::io::stdout().write_all(&secret)?;
    writeln!(std::io::stdout())?;
    Ok(Effects::default())
}

fn verify_transcript(path: &Path, head: Option<&str>) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (records, computed) = transcript::verify_against(&text, head)
        .with_context(|| format!("{} does not verify", path.display()))?;
    println!(
        "{}: {} records, chain intact\n  head sha256 {computed}\n  words       {}",
        path.display(),
        records.len(),
        ceremony_os_pgpwords::format_hex(&computed).replace('\n', "\n              ")
    );
    Ok(())
}
