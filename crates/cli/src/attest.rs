//! Witness attestations on the command line: `verify --attest` signs the verdict, `attestations
//! check` counts the witnesses, and `burn --trust` refuses an ISO too few of them attest.

use anyhow::{Context, Result, bail};
use ceremony_os_attest::check::{self, Report, Requirement};
use ceremony_os_attest::keys::Signer;
use ceremony_os_attest::statement::{PAYLOAD_TYPE, Verdict, Verification};
use ceremony_os_attest::trust;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `verify`'s options for writing a signed attestation of its verdict.
#[derive(Args, Debug)]
pub struct AttestArgs {
    /// Write a signed attestation of the verdict (PASSED or FAILED) to FILE: an in-toto
    /// Statement v1 with a SLSA verification summary in a DSSE envelope. FILE must not exist.
    #[arg(long, value_name = "FILE", requires = "signing_key")]
    pub attest: Option<PathBuf>,
    /// The witness's ed25519 key: an OpenSSH private key file (not encrypted) or PKCS#8 PEM; or
    /// a public key file (`ssh-ed25519 AAAA...`, like id_ed25519.pub), and the ssh-agent at
    /// $SSH_AUTH_SOCK that holds the key signs (ssh-agent, or gpg-agent for a key on a token).
    #[arg(long, value_name = "KEY", requires = "attest")]
    pub signing_key: Option<PathBuf>,
    /// Who verified, as the statement names them [default: the key's fingerprint].
    #[arg(long, value_name = "NAME")]
    pub verifier: Option<String>,
    /// When the witness verified (RFC 3339 UTC, like 2026-07-12T09:30:00Z) [default: the
    /// definition's snapshot time: the clock is never read].
    #[arg(long, value_name = "TIME")]
    pub verified_at: Option<String>,
    /// The source commit the witness checked out (40 hex digits), recorded in the statement.
    #[arg(long, value_name = "COMMIT")]
    pub commit: Option<String>,
}

/// A signer ready before the rebuild starts (a bad key fails early, not after an hour).
#[derive(Debug)]
pub struct Attester {
    file: PathBuf,
    key: Signer,
    verifier: String,
    verified_at: String,
    commit: Option<String>,
}

impl AttestArgs {
    pub fn attester(&self, snapshot: &str) -> Result<Option<Attester>> {
        let (Some(file), Some(key_path)) = (&self.attest, &self.signing_key) else { return Ok(None) };
        if std::fs::symlink_metadata(file).is_ok() {
            bail!("{} already exists; attestations are never overwritten", file.display());
        }
        let key = signer(key_path)?;
        let verified_at = match &self.verified_at {
            Some(time) => {
                ceremony_os_definition::Timestamp::parse_rfc3339_utc(time)
                    .map_err(|e| anyhow::anyhow!("--verified-at {time:?}: {e}"))?;
                time.clone()
            }
            None => snapshot.to_string(),
        };
        if let Some(commit) = &self.commit
            && (commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            bail!("--commit {commit:?} is not a commit id (40 hex digits)");
        }
        Ok(Some(Attester {
            file: file.clone(),
            verifier: self.verifier.clone().unwrap_or_else(|| key.public().keyid()),
            key,
            verified_at,
            commit: self.commit.as_ref().map(|c| c.to_ascii_lowercase()),
        }))
    }
}

impl Attester {
    /// Sign the verdict about `iso_name` with digest `iso_sha256` and write it (new file only).
    pub fn write(&self, iso_name: &str, iso_sha256: &str, lock_sha256: &str, passed: bool) -> Result<()> {
        let verification = Verification {
            iso_name: iso_name.to_string(),
            iso_sha256: iso_sha256.to_string(),
            verifier: self.verifier.clone(),
            time_verified: self.verified_at.clone(),
            commit: self.commit.clone(),
            lock_sha256: Some(lock_sha256.to_string()),
            verdict: if passed { Verdict::Passed } else { Verdict::Failed },
        };
        let envelope = self.key.sign_envelope(PAYLOAD_TYPE, verification.statement())?;
        ceremony_os_media::write_new(&self.file, envelope.to_json().as_bytes())?;
        eprintln!(
            "attestation ({}) signed by {} written to {}",
            verification.verdict.as_str(),
            self.key.public().keyid(),
            self.file.display()
        );
        Ok(())
    }
}

/// Who counts as a witness, and how many must attest: a trust file and M, or the witness
/// policy in force (a chain of reviewed policy files from a root whose digest was written down).
#[derive(Args, Debug, Clone)]
pub struct WitnessArgs {
    /// The witnesses, in OpenSSH allowed_signers format (`principal ssh-ed25519 AAAA...`).
    #[arg(long, value_name = "ALLOWED_SIGNERS", requires = "require", conflicts_with = "policy")]
    pub trust: Option<PathBuf>,
    /// With --trust: how many distinct witnesses must attest PASSED.
    #[arg(long, value_name = "M", requires = "trust")]
    pub require: Option<usize>,
    /// The witness policy files, oldest first (repeat the option): the first is the root, each
    /// later one replaces the one before it; the last is in force.
    #[arg(long, value_name = "POLICY", requires_all = ["policy_root", "policy_head"])]
    pub policy: Vec<PathBuf>,
    /// The SHA-256 of the root policy, as written down when it was adopted.
    #[arg(long, value_name = "SHA256", requires = "policy")]
    pub policy_root: Option<String>,
    /// The SHA-256 of the policy in force, as written down when it was approved: the chain must
    /// end there (leaving later files out cannot bring an older policy back).
    #[arg(long, value_name = "SHA256", requires = "policy")]
    pub policy_head: Option<String>,
    /// An approval of a policy change (repeat): a DSSE envelope from `attestations
    /// approve-policy`; each change needs the M of the policy it replaces.
    #[arg(long, value_name = "FILE", requires = "policy")]
    pub policy_approval: Vec<PathBuf>,
}

impl WitnessArgs {
    pub fn given(&self) -> bool {
        self.trust.is_some() || !self.policy.is_empty()
    }

    /// The witnesses and M, and what they were read from.
    fn who_counts(&self) -> Result<(Vec<trust::Witness>, usize, String)> {
        match (&self.trust, self.require, &self.policy_root, &self.policy_head) {
            (Some(file), Some(required), _, _) => {
                let text = String::from_utf8(read(file)?)
                    .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", file.display()))?;
                Ok((trust::parse(&text, &file.display().to_string())?, required, file.display().to_string()))
            }
            (None, _, Some(root), Some(head)) => {
                let policy = ceremony_os_attest::policy::in_force_at(
                    &read_named(&self.policy)?,
                    root,
                    head,
                    &read_named(&self.policy_approval)?,
                )?;
                eprintln!(
                    "witness policy in force: {} (version {}, SHA-256 {})",
                    policy.origin, policy.version, policy.sha256
                );
                Ok((policy.witnesses, policy.required, policy.origin))
            }
            _ => bail!(
                "who counts as a witness: --trust and --require, or --policy, --policy-root and --policy-head"
            ),
        }
    }
}

/// Who must attest and what their attestations must name.
#[derive(Args, Debug)]
pub struct TrustArgs {
    #[command(flatten)]
    pub witnesses: WitnessArgs,
    /// When given, attestations must name this source commit.
    #[arg(long, value_name = "COMMIT")]
    pub commit: Option<String>,
    /// When given, attestations must name this lock SHA-256.
    #[arg(long, value_name = "SHA256")]
    pub lock_sha256: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AttestationsCommand {
    /// Count the witnesses: exit 0 when at least M distinct witnesses of the trust file attest
    /// PASSED for this digest, 1 when not, 2 on an error. Says who attested, who did not, and
    /// why each rejected attestation does not count.
    Check(CheckArgs),
    /// Print the body of a Rekor v2 log entry for an attestation (POST it to the log's
    /// /api/v2/log/entries): a `hashedrekord` entry of the envelope's pre-authentication encoding
    /// (its SHA-512 and an Ed25519ph signature of it, PKIX_ED25519_PH), with the witness's key as
    /// DER. Needs the private key file (an ssh-agent makes no Ed25519ph signatures); refused
    /// unless the envelope's one signature is this key's. Nothing is sent.
    LogRequest(LogRequestArgs),
    /// Approve a new witness policy: sign the file, byte for byte, with a witness's key of the
    /// policy it replaces (a DSSE envelope written to --out). The new policy counts once as many
    /// witnesses of the old one as it required have approved it.
    ApprovePolicy(ApprovePolicyArgs),
}

#[derive(Args, Debug)]
pub struct ApprovePolicyArgs {
    /// The new policy file.
    #[arg(value_name = "POLICY")]
    policy: PathBuf,
    /// The witness's key, as for `verify --signing-key` (a private key file, or a public key and
    /// the ssh-agent that holds it).
    #[arg(long, value_name = "KEY")]
    signing_key: PathBuf,
    /// Where to write the approval (must not exist).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct LogRequestArgs {
    /// The witness's private key file (OpenSSH, not encrypted, or PKCS#8 PEM), as for `verify
    /// --signing-key`.
    #[arg(long, value_name = "KEY")]
    signing_key: PathBuf,
    /// The attestation (a DSSE envelope `verify --attest` wrote).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    trust: TrustArgs,
    /// The ISO's SHA-256.
    #[arg(long, value_name = "SHA256")]
    digest: String,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Attestation files (DSSE envelopes).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(command: &AttestationsCommand) -> Result<ExitCode> {
    match command {
        AttestationsCommand::Check(args) => check_command(args),
        AttestationsCommand::ApprovePolicy(args) => approve_policy(args),
        AttestationsCommand::LogRequest(args) => log_request(args),
    }
}

fn check_command(args: &CheckArgs) -> Result<ExitCode> {
    let report = witnessed(&args.trust, &args.digest, &args.files)?;
    if args.json {
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
    }
    Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn approve_policy(args: &ApprovePolicyArgs) -> Result<ExitCode> {
    let bytes = read(&args.policy)?;
    ceremony_os_attest::policy::Policy::parse(&bytes, &args.policy.display().to_string())?;
    let key = signer(&args.signing_key)?;
    let envelope = key.sign_envelope(ceremony_os_attest::policy::APPROVAL_PAYLOAD_TYPE, bytes)?;
    ceremony_os_media::write_new(&args.out, envelope.to_json().as_bytes())?;
    eprintln!(
        "approval of {} signed by {} written to {}",
        args.policy.display(),
        key.public().keyid(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn log_request(args: &LogRequestArgs) -> Result<ExitCode> {
    let key = ceremony_os_attest::keys::SigningKey::from_bytes(
        &read(&args.signing_key)?,
        &args.signing_key.display().to_string(),
    )?;
    let body = ceremony_os_attest::rekor::hashedrekord_request(&read(&args.file)?, &key)
        .with_context(|| args.file.display().to_string())?;
    std::io::stdout().write_all(body.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// A file's bytes, or an error naming it.
fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Each file as (its name, its bytes): how the attest library takes attestations and policies.
fn read_named(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    paths.iter().map(|p| Ok((p.display().to_string(), read(p)?))).collect()
}

/// Who signs for the witness's KEY file: the key itself, or (for a public key) the ssh-agent at
/// $SSH_AUTH_SOCK.
fn signer(key_path: &std::path::Path) -> Result<Signer> {
    let socket = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
    Ok(Signer::from_key_file(&read(key_path)?, &key_path.display().to_string(), socket.as_deref())?)
}

/// Load the witnesses and attestations and count; the report is printed on standard error.
pub fn witnessed(trust: &TrustArgs, digest: &str, files: &[PathBuf]) -> Result<Report> {
    let (witnesses, required, origin) = trust.witnesses.who_counts()?;
    let requirement =
        Requirement::new(digest, required, trust.commit.as_deref(), trust.lock_sha256.as_deref(), &witnesses)
            .map_err(|e| anyhow::anyhow!("{e} ({origin})"))?;
    let report = check::check(&read_named(files)?, &witnesses, &requirement);
    // File names and what an envelope says are the attester's text: escaped, never raw.
    let shown = ceremony_os_render::controls_escaped;
    for a in &report.accepted {
        eprintln!(
            "attested PASSED: {} ({}) in {}, verified {}",
            shown(&a.witness),
            a.keyid,
            shown(&a.file),
            shown(&a.time_verified)
        );
    }
    for r in &report.rejected {
        eprintln!("does not count: {}: {}", shown(&r.file), shown(&r.reason));
    }
    if !report.missing.is_empty() {
        eprintln!("no attestation from: {}", report.missing.join(", "));
    }
    eprintln!(
        "{}: {} of {} required witnesses attest PASSED for {}",
        if report.passed { "WITNESSED" } else { "NOT WITNESSED" },
        report.accepted.len(),
        report.required,
        requirement.iso_sha256
    );
    Ok(report)
}
