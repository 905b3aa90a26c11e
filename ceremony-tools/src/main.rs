//! `ceremony`: the tool the ceremony administrator runs on the air-gapped laptop. It talks to the
//! HSM through PKCS#11, splits secrets among keyholders, and records every command in a
//! hash-chained transcript whose head the witnesses write down. This file is the command line:
//! parsing, the transcript around each command, and printing; the steps live in `ca`.

mod ca;
mod config;
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
use zeroize::Zeroizing;

/// Key-ceremony tool for HSMs over PKCS#11, with Shamir backups and a hash-chained transcript.
///
/// Every command except `transcript verify` first opens and verifies the transcript (nothing is
/// done when it does not verify), then appends a record of what it did (also when it failed)
/// and prints the new head as hex and PGP words for the witnesses to write down. Digests of
/// outputs are of their DER content, as printed and as recorded. PINs are read from the terminal
/// without echo, or from --pin-fd; never from the command line.
#[derive(Parser, Debug)]
#[command(name = "ceremony", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The transcript (JSON lines, append-only); its directory must exist.
    #[arg(long, global = true, env = "CEREMONY_TRANSCRIPT", default_value = "ceremony-transcript.jsonl")]
    transcript: PathBuf,
    /// PKCS#11 module (overrides the step file's).
    #[arg(long, global = true, value_name = "PATH")]
    module: Option<PathBuf>,
    /// Read the PIN from this file descriptor (first line) instead of the terminal.
    #[arg(long, global = true, value_name = "FD")]
    pin_fd: Option<u32>,
    /// Use a token whose next wrong PIN would lock it (refused otherwise, before any try).
    #[arg(long, global = true)]
    allow_final_pin_try: bool,
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
    /// (both critical), key identifiers. Linted before signing, verified and linted after.
    Root {
        /// The step file (TOML: [hsm], [key], [subject], [validity], [profile], [outputs]).
        config: PathBuf,
    },
    /// Issue an intermediate CA certificate for a CSR. The CSR's signature and key are checked;
    /// its subject is copied byte for byte; the profile decides validity, path length, CRL
    /// distribution point and AIA. The issuer certificate is verified (signature, CA, path
    /// length, validity) and the signing key must match it.
    SignCsr {
        /// The step file (TOML: [hsm], [issuer], [csr], [validity], [profile], [outputs]).
        config: PathBuf,
    },
    /// Cross-certify an existing CA: its subject, public key and key identifier, signed by this
    /// CA's key, with the same checks as sign-csr.
    Cross {
        /// The step file (TOML: [hsm], [issuer], [subject], [validity], [profile], [outputs]).
        config: PathBuf,
    },
    /// A certificate signing request for a key in the HSM (an intermediate whose key lives in
    /// its own HSM), to be signed by another CA.
    Request {
        /// The step file (TOML: [hsm], [key], [subject], [outputs]).
        config: PathBuf,
    },
    /// Sign a CRL with the issuer's key: thisUpdate/nextUpdate within the issuer's validity and
    /// at most the profile's span, serials normalised and unique, AKI copied from the issuer.
    Crl {
        /// The step file (TOML: [hsm], [issuer], [crl], [profile], [outputs]).
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
    /// Slots, tokens and objects (with the protection attributes of keys). Uninitialized tokens
    /// are shown as such.
    List {
        /// Also list the private objects of the token --token names (asks for its PIN).
        #[arg(long, requires = "token")]
        login: bool,
        /// The token to log in to.
        #[arg(long, value_name = "LABEL")]
        token: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Generate a key pair inside the HSM (RSA 3072/4096, EC P-256/P-384): sensitive, never
    /// extractable, signing only, neither modifiable nor copyable; write the public key as PEM.
    Generate {
        /// The step file (TOML: [hsm], [key], [outputs]).
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ShamirCommand {
    /// Split a secret (read without echo, or from --secret-fd) into N shares, K of which recover
    /// it; one share per line on standard output.
    Split(SplitArgs),
    /// Recover a secret from K shares: typed without echo (or read one per line from
    /// --shares-fd), never shown. The secret goes to the standard input of COMMAND (for example
    /// `-- ceremony key generate step.toml --pin-fd 0`), or is printed with --print.
    Combine(CombineArgs),
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

#[derive(Args, Debug)]
struct CombineArgs {
    /// Read the shares, one per line, from this file descriptor instead of asking on the
    /// terminal.
    #[arg(long, value_name = "FD")]
    shares_fd: Option<u32>,
    /// Print the recovered secret (only when it must be read by a person).
    #[arg(long, conflicts_with = "command")]
    print: bool,
    /// The command that gets the secret on its standard input.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum TranscriptCommand {
    /// Check the chain (naming the first broken record) and the heads the witnesses wrote down,
    /// as hex or PGP words, in the order they were written: each must be a head of this
    /// transcript, and no record may follow the last one unless --prefix is given.
    Verify {
        /// A witnessed head (64 hex digits, or 32 PGP words in quotes); repeat for heads written
        /// down at several points of the ceremony.
        #[arg(long, value_name = "HEAD")]
        head: Vec<String>,
        /// Records after the last witnessed head are allowed (the ceremony went on after it).
        #[arg(long)]
        prefix: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once.
fn render_error(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(text.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let (name, config) = match &cli.command {
        Command::Transcript(TranscriptCommand::Verify { head, prefix }) => {
            verify_transcript(&cli.transcript, head, *prefix)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Hsm(_) => ("hsm list", None),
        Command::Key(KeyCommand::Generate { config }) => ("key generate", Some(config)),
        Command::Root { config } => ("root", Some(config)),
        Command::SignCsr { config } => ("sign-csr", Some(config)),
        Command::Cross { config } => ("cross", Some(config)),
        Command::Request { config } => ("request", Some(config)),
        Command::Crl { config } => ("crl", Some(config)),
        Command::Shamir(ShamirCommand::Split(_)) => ("shamir split", None),
        Command::Shamir(ShamirCommand::Combine(_)) => ("shamir combine", None),
    };
    // The gate: nothing happens unless the transcript opens and verifies.
    let transcript = transcript::Transcript::open(&cli.transcript)
        .with_context(|| format!("the transcript {} (nothing was done)", cli.transcript.display()))?;
    let pin = |token: &str| read_pin(cli, token);
    let access = ca::HsmAccess {
        module: cli.module.as_deref(),
        pin: &pin,
        allow_final_pin_try: cli.allow_final_pin_try,
    };
    let mut handoff = None;
    let result: Result<ca::Outcome> = match &cli.command {
        Command::Hsm(HsmCommand::List { login, token }) => {
            ca::list(&access, if *login { token.as_deref() } else { None }).and_then(|listing| {
                write!(std::io::stdout(), "{listing}")?;
                Ok(ca::Outcome::default())
            })
        }
        Command::Key(_) => ca::key_generate(&access, config.expect("has a step file")),
        Command::Root { .. } => ca::root(&access, config.expect("has a step file")),
        Command::SignCsr { .. } => ca::sign_csr(&access, config.expect("has a step file")),
        Command::Cross { .. } => ca::cross(&access, config.expect("has a step file")),
        Command::Request { .. } => ca::request(&access, config.expect("has a step file")),
        Command::Crl { .. } => ca::crl(&access, config.expect("has a step file")),
        Command::Shamir(ShamirCommand::Split(args)) => shamir_split(args),
        Command::Shamir(ShamirCommand::Combine(args)) => shamir_combine(args).map(|(outcome, secret)| {
            handoff = secret;
            outcome
        }),
        Command::Transcript(_) => unreachable!("handled above"),
    };
    let (outcome, status) = match &result {
        Ok(outcome) => (outcome, "ok".to_string()),
        Err(e) => (&ca::Outcome::default(), format!("error: {}", render_error(e))),
    };
    for written in &outcome.outputs {
        show_digest(
            &format!("{} written to {}", written.what, written.path.display()),
            &ca::sha256_hex(&written.der),
        );
    }
    let record = transcript::Record {
        seq: 0,
        prev: String::new(),
        time: now_utc(),
        command: name.into(),
        config_sha256: outcome.config_sha256.clone(),
        inputs: outcome.inputs.clone(),
        outputs: outcome
            .outputs
            .iter()
            .map(|w| (w.path.display().to_string(), ca::sha256_hex(&w.der)))
            .collect::<BTreeMap<_, _>>(),
        outcome: status,
    };
    let head = transcript.append(record).context("appending to the transcript")?;
    show_digest(&format!("transcript {} head", cli.transcript.display()), &head);
    result?;
    match (handoff, &cli.command) {
        (Some(secret), Command::Shamir(ShamirCommand::Combine(args))) => {
            hand_secret_to(&args.command, &secret)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// A digest for people: hex, then PGP words.
fn show_digest(title: &str, hex: &str) {
    eprintln!(
        "{title}\n  sha256 {hex}\n  words  {}",
        ceremony_os_pgpwords::format_hex(hex).replace('\n', "\n         ")
    );
}

/// The laptop's clock, for the transcript only (the record says when the step happened).
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    ceremony_os_definition::Timestamp::from_unix(secs).to_string()
}

fn read_fd_lines(fd: u32, what: &str) -> Result<Vec<Zeroizing<String>>> {
    let path = format!("/proc/self/fd/{fd}");
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot read the {what} from file descriptor {fd}"))?;
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        lines.push(Zeroizing::new(line?.trim_end_matches('\r').to_string()));
    }
    Ok(lines)
}

fn read_fd_line(fd: u32, what: &str) -> Result<Zeroizing<String>> {
    let first = read_fd_lines(fd, what)?.into_iter().next().unwrap_or_default();
    if first.is_empty() {
        bail!("the {what} read from file descriptor {fd} is empty");
    }
    Ok(first)
}

fn read_pin(cli: &Cli, token: &str) -> Result<Zeroizing<String>> {
    match cli.pin_fd {
        Some(fd) => read_fd_line(fd, "PIN"),
        None => rpassword::prompt_password(format!("PIN for token {token:?}: "))
            .map(Zeroizing::new)
            .context("no terminal to ask for the PIN on: use --pin-fd"),
    }
}

fn shamir_split(args: &SplitArgs) -> Result<ca::Outcome> {
    let secret = match args.secret_fd {
        Some(fd) => read_fd_line(fd, "secret")?,
        None => {
            let first = Zeroizing::new(
                rpassword::prompt_password("secret to split: ").context("no terminal: use --secret-fd")?,
            );
            let again = Zeroizing::new(rpassword::prompt_password("the same secret again: ")?);
            if first != again {
                bail!("the two entries differ");
            }
            first
        }
    };
    let mut split_id = [0u8; 8];
    getrandom::getrandom(&mut split_id).context("the system's random number generator failed")?;
    let shares = shamir::split(secret.as_bytes(), args.threshold, args.shares, split_id)?;
    let mut out = std::io::stdout();
    for share in &shares {
        writeln!(out, "{}", share.to_text())?;
    }
    eprintln!(
        "{} shares of split {} written, one per line; any {} recover the secret",
        shares.len(),
        hex::encode(split_id),
        args.threshold
    );
    Ok(ca::Outcome::default())
}

/// Read and combine the shares; the secret is returned to be handed on, never shown unless
/// `--print`.
fn shamir_combine(args: &CombineArgs) -> Result<(ca::Outcome, Option<Zeroizing<Vec<u8>>>)> {
    if !args.print && args.command.is_empty() {
        bail!(
            "say where the secret goes: `-- COMMAND ...` (it gets the secret on its standard input) or --print"
        );
    }
    let lines: Vec<Zeroizing<String>> = match args.shares_fd {
        Some(fd) => read_fd_lines(fd, "shares")?,
        None => {
            let mut lines = Vec::new();
            loop {
                let prompt = format!("share {} (empty when done): ", lines.len() + 1);
                let line = Zeroizing::new(
                    rpassword::prompt_password(prompt).context("no terminal: use --shares-fd")?,
                );
                if line.trim().is_empty() {
                    break;
                }
                lines.push(line);
            }
            lines
        }
    };
    let mut shares = Vec::new();
    for (i, line) in lines.iter().filter(|l| !l.trim().is_empty()).enumerate() {
        shares.push(shamir::TextShare::parse(line, i + 1)?);
    }
    let secret = shamir::combine(&shares)?;
    if args.print {
        eprintln!("warning: printing the secret, as --print asks");
        std::io::stdout().write_all(&secret)?;
        writeln!(std::io::stdout())?;
        return Ok((ca::Outcome::default(), None));
    }
    eprintln!("{} shares combined; handing the secret to `{}`", shares.len(), args.command.join(" "));
    Ok((ca::Outcome::default(), Some(secret)))
}

/// Run `command` with `secret` (and a newline) on its standard input; its exit status is ours.
fn hand_secret_to(command: &[String], secret: &[u8]) -> Result<ExitCode> {
    let Some((program, rest)) = command.split_first() else { bail!("no command given") };
    let mut child = std::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    {
        let mut stdin = child.stdin.take().context("the command has no standard input")?;
        stdin.write_all(secret)?;
        stdin.write_all(b"\n")?;
    }
    let status = child.wait()?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

fn verify_transcript(path: &Path, heads: &[String], prefix: bool) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let heads: Vec<String> = heads.iter().map(|h| transcript::parse_head(h)).collect::<Result<_, _>>()?;
    let (records, computed, witnessed) = transcript::verify_heads(&text, &heads, prefix)
        .with_context(|| format!("{} does not verify", path.display()))?;
    println!("{}: {} records, chain intact", path.display(), records.len());
    for (head, at) in heads.iter().zip(&witnessed.at) {
        println!("  witnessed head {}... is record {at} of {}", &head[..16], witnessed.total);
    }
    if let Some(last) = witnessed.at.last()
        && *last < witnessed.total
    {
        println!(
            "  records {}..{} follow the last witnessed head: no witness vouches for them",
            last + 1,
            witnessed.total
        );
    }
    if heads.is_empty() {
        println!(
            "  no witnessed head given: the chain alone does not show the file was not rewritten or cut short"
        );
    }
    println!(
        "  head sha256 {computed}\n  words       {}",
        ceremony_os_pgpwords::format_hex(&computed).replace('\n', "\n              ")
    );
    Ok(())
}
