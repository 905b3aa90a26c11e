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
    ceremony_os_spec::Timestamp::from_unix(secs).to_string()
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
    let module = module_for(cli, config.hsm.module.as_deref())?;
    let hsm = hsm::Hsm::open(&module)?;
    let slot = hsm.slot_for(&config.hsm.token_label)?;
    let pin = read_pin(cli, &config.hsm.token_label)?;
    let session = hsm.login(slot, &pin)?;
    let spki = hsm::generate(&session, &config.key)?;
    let spki_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&spki));
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
    ceremony_os_spec::Timestamp::parse_rfc3339_utc(text)
        .map(|t| t.unix())
        .map_err(|e| anyhow::anyhow!("{field}: {e}"))
}

fn root(cli: &Cli, config_path: &Path) -> Result<Effects> {
    let (config, digest): (config::RootConfig, String) = config::load(config_path)?;
    let output = config.outputs.certificate.clone();
    config::check_outputs(&[&output])?;
    // Profile rules, before the HSM is touched.
    let not_before = parse_time(&config.validity.not_before, "validity.not_before")?;
    let not_after = parse_time(&config.validity.not_after, "validity.not_after")?;
    if not_after <= not_before {
        bail!("validity.not_after must be after validity.not_before");
    }
    let days = (not_after - not_before) as f64 / 86_400.0;
    if days > f64::from(config.profile.max_validity_days) {
        bail!(
            "the validity is {days:.0} days; the profile allows at most {}",
            config.profile.max_validity_days
        );
    }

    let module = module_for(cli, config.hsm.module.as_deref())?;
    let hsm = hsm::Hsm::open(&module)?;
    let slot = hsm.slot_for(&config.hsm.token_label)?;
    let pin = read_pin(cli, &config.hsm.token_label)?;
    let session = hsm.login(slot, &pin)?;
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
    let cert_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(certificate.der()));
    eprintln!(
        "root certificate written to {}\n  sha256 {cert_sha256}\n  words  {}",
        output.display(),
        ceremony_os_pgpwords::format_hex(&cert_sha256).replace('\n', "\n         ")
    );
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
