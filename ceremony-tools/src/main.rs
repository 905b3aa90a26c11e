//! `ceremony`: the tool the ceremony administrator runs on the air-gapped laptop. It talks to the
//! HSM through PKCS#11, splits secrets among keyholders, and records every command in a
//! hash-chained transcript whose head the witnesses write down. This file is the command line:
//! parsing, the terminal (PINs, answers, what the library says) and printing; the work is in the
//! `ceremony_tools` library.

use anyhow::{Context, Result, bail};
use ceremony_tools::console::Console;
use ceremony_tools::{ca, export, plan, recorded, shamir, transcript};
use clap::{Args, Parser, Subcommand};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
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
    /// A ceremony plan: the reviewed list of steps, run in order with witness checkpoints.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Write what the ceremony made (every output the transcript records, checked against its
    /// digest, the transcript, and a SHA256SUMS of them) to a USB stick as a FAT file system,
    /// read it back from the stick and compare, and show the digests for the witnesses. Run it
    /// in the work directory; the stick is overwritten from its first byte.
    Export(ExportArgs),
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
enum PlanCommand {
    /// Check a plan without touching an HSM: the digests of its step files and pinned inputs,
    /// that every step file parses, that every file a step reads is pinned or made by an
    /// earlier step; print the steps.
    Check {
        /// The plan file (TOML: [plan] title, then [[step]] entries).
        plan: PathBuf,
    },
    /// Run a plan in the current directory (the work directory): everything is checked first,
    /// the plan's files are copied here from the checked bytes, then each step runs and is
    /// recorded in the transcript. Stops at the first failure or unconfirmed checkpoint.
    Run(PlanRunArgs),
}

#[derive(Args, Debug)]
struct PlanRunArgs {
    /// The plan file (on the material disc).
    plan: PathBuf,
    /// Continue after the last step the transcript shows completed.
    #[arg(long)]
    resume: bool,
    /// Rehearse: run the same plan against throwaway SoftHSM tokens made for this run (with the
    /// PINs given now), whatever HSM the step files name. Records are marked as a rehearsal.
    #[arg(long, conflicts_with = "resume")]
    dry_run: bool,
    /// Read the witnesses' answers at checkpoints from this file descriptor (one line each)
    /// instead of the terminal.
    #[arg(long, value_name = "FD")]
    confirm_fd: Option<u32>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["device", "image"])))]
struct ExportArgs {
    /// The USB stick (a block device such as /dev/sdb): refused if mounted or in use.
    #[arg(long, value_name = "DEVICE")]
    device: Option<PathBuf>,
    /// Write a new image file instead of a device.
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// The FAT volume label.
    #[arg(long, default_value = "CEREMONY")]
    label: String,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    json: bool,
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

/// The terminal: narration and digests on standard error, shares on standard output.
struct Terminal;

impl Console for Terminal {
    fn say(&self, line: &str) {
        eprintln!("{line}");
    }

    fn digest(&self, title: &str, hex: &str) {
        eprintln!("{}", ceremony_os_render::digest(title, hex));
    }

    fn shares(&self, shares: &[Zeroizing<String>]) -> Result<()> {
        let mut out = std::io::stdout().lock();
        for share in shares {
            writeln!(out, "{}", share.as_str())?;
        }
        Ok(out.flush()?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ceremony_os_render::error(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let step = match &cli.command {
        Command::Transcript(TranscriptCommand::Verify { head, prefix }) => {
            verify_transcript(&cli.transcript, head, *prefix)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Plan(PlanCommand::Check { plan }) => {
            let plan = plan::load(plan)?;
            plan::check(&plan)?;
            print!("{}", plan::describe(&plan));
            Terminal.digest(&format!("plan {}", plan.path.display()), &plan.sha256);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Plan(PlanCommand::Run(args)) => return run_plan(cli, args),
        Command::Export(args) => return export(cli, args),
        Command::Hsm(_) => None,
        Command::Key(KeyCommand::Generate { config }) => Some((ca::Step::KeyGenerate, config)),
        Command::Root { config } => Some((ca::Step::Root, config)),
        Command::SignCsr { config } => Some((ca::Step::SignCsr, config)),
        Command::Cross { config } => Some((ca::Step::Cross, config)),
        Command::Request { config } => Some((ca::Step::Request, config)),
        Command::Crl { config } => Some((ca::Step::Crl, config)),
        Command::Shamir(_) => None,
    };
    let name = match (&cli.command, step) {
        (_, Some((step, _))) => step.name(),
        (Command::Hsm(_), _) => "hsm list",
        (Command::Shamir(ShamirCommand::Split(_)), _) => "shamir split",
        _ => "shamir combine",
    };
    // The gate: nothing happens unless the transcript opens and verifies.
    let mut transcript = transcript::Transcript::open(&cli.transcript)
        .with_context(|| format!("the transcript {} (nothing was done)", cli.transcript.display()))?;
    let pins = Pins::new(cli.pin_fd);
    let pin = |token: &str| pins.get(token);
    let access = ca::HsmAccess {
        module: cli.module.as_deref(),
        pin: &pin,
        allow_final_pin_try: cli.allow_final_pin_try,
        console: &Terminal,
    };
    let mut handoff = None;
    let result: Result<ca::Outcome> = match (&cli.command, step) {
        (_, Some((step, config))) => step.run(&access, &ceremony_tools::config::Inputs::Open, config),
        (Command::Hsm(HsmCommand::List { login, token }), _) => {
            ca::list(&access, if *login { token.as_deref() } else { None }).and_then(|listing| {
                write!(std::io::stdout(), "{listing}")?;
                Ok(ca::Outcome::default())
            })
        }
        (Command::Shamir(ShamirCommand::Split(args)), _) => read_secret(args).and_then(|secret| {
            shamir::split_for_keyholders(secret.as_bytes(), args.threshold, args.shares, &Terminal)
        }),
        (Command::Shamir(ShamirCommand::Combine(args)), _) => {
            shamir_combine(args).map(|(outcome, secret)| {
                handoff = secret;
                outcome
            })
        }
        _ => unreachable!("every other command returned above"),
    };
    recorded::record(&mut transcript, name, None, &result, &Terminal)?;
    // The command the secret goes to may be `ceremony` itself, which takes the transcript's lock.
    drop(transcript);
    result?;
    match (handoff, &cli.command) {
        (Some(secret), Command::Shamir(ShamirCommand::Combine(args))) => {
            hand_secret_to(&args.command, &secret)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Set only in the process `plan run --dry-run` starts with its throwaway SoftHSM configuration:
/// the directory holding it.
const REHEARSAL_ENV: &str = "CEREMONY_REHEARSAL_HSM";

fn run_plan(cli: &Cli, args: &PlanRunArgs) -> Result<ExitCode> {
    let in_rehearsal = std::env::var_os(REHEARSAL_ENV).is_some();
    if args.dry_run && cli.module.is_some() {
        bail!("a rehearsal uses SoftHSM tokens made for it; --module would point it at a real HSM");
    }
    if in_rehearsal && !args.dry_run {
        bail!("{REHEARSAL_ENV} is set, but this is not a rehearsal: unset it for a ceremony");
    }
    if args.dry_run && !in_rehearsal {
        return rehearse();
    }
    let answers = Lines::new(args.confirm_fd);
    let confirm = |question: &str| answers.ask(question).map(|a| a.trim().eq_ignore_ascii_case("yes"));
    let pins = Pins::new(cli.pin_fd);
    let pin = |token: &str| pins.get(token);
    plan::execute(
        &plan::Execute {
            plan: &args.plan,
            transcript: &cli.transcript,
            resume: args.resume,
            rehearsal: args.dry_run,
            module: cli.module.as_deref(),
            allow_final_pin_try: cli.allow_final_pin_try,
        },
        &pin,
        &confirm,
        &Terminal,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `plan run --dry-run`: make a throwaway SoftHSM configuration and token directory, run this
/// same command with it (SoftHSM reads its configuration from the environment when it loads),
/// and remove it afterwards.
fn rehearse() -> Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("ceremony-rehearsal-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).with_context(|| format!("cannot create {}", tokens.display()))?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .with_context(|| format!("cannot write {}", conf.display()))?;
    let exe = std::env::current_exe().context("cannot find this program to run the rehearsal")?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("SOFTHSM2_CONF", &conf)
        .env(REHEARSAL_ENV, dir.path())
        .status()
        .context("cannot start the rehearsal")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn export(cli: &Cli, args: &ExportArgs) -> Result<ExitCode> {
    let target = match (&args.device, &args.image) {
        (Some(device), None) => export::Target::Device(device.clone()),
        (None, Some(image)) => export::Target::Image(image.clone()),
        _ => unreachable!("clap requires exactly one"),
    };
    let collected = export::collect(&cli.transcript)?;
    if collected.rehearsal {
        eprintln!("REHEARSAL: this transcript records a rehearsal (plan run --dry-run), not a ceremony");
    }
    let written = export::write(&collected, &target, &args.label)?;
    let sums_sha256 = ca::sha256_hex(collected.sums());
    let (export::Target::Device(path) | export::Target::Image(path)) = &target;
    if args.json {
        let files: BTreeMap<&String, String> =
            collected.files.iter().map(|(name, bytes)| (name, ca::sha256_hex(bytes))).collect();
        println!(
            "{}",
            serde_json::json!({
                "target": path, "label": args.label, "files": files,
                "sha256sums_sha256": sums_sha256, "volume_sha256": written.sha256, "volume_bytes": written.bytes,
                "read_back": "match", "transcript_head": collected.head, "rehearsal": collected.rehearsal,
            })
        );
    } else {
        std::io::stdout().write_all(collected.sums())?;
        eprintln!("MATCH: {} read back holds the export ({} bytes)", path.display(), written.bytes);
    }
    Terminal.digest("the exported transcript's head", &collected.head);
    Terminal.digest("SHA256SUMS on the stick", &sums_sha256);
    Terminal.digest("the stick's file system", &written.sha256);
    Ok(ExitCode::SUCCESS)
}

/// PINs, asked once per token: from the terminal, or one line per token, in the order the
/// tokens are first used, from --pin-fd.
struct Pins {
    lines: Lines,
    cache: RefCell<BTreeMap<String, Zeroizing<String>>>,
}

impl Pins {
    fn new(fd: Option<u32>) -> Pins {
        Pins { lines: Lines::new(fd), cache: RefCell::new(BTreeMap::new()) }
    }

    fn get(&self, token: &str) -> Result<Zeroizing<String>> {
        if let Some(pin) = self.cache.borrow().get(token) {
            return Ok(pin.clone());
        }
        let pin = match self.lines.fd {
            Some(fd) => {
                let line = self.lines.next("PIN")?;
                if line.is_empty() {
                    bail!("the PIN for token {token:?} read from file descriptor {fd} is empty");
                }
                line
            }
            None => rpassword::prompt_password(format!("PIN for token {token:?}: "))
                .map(Zeroizing::new)
                .context("no terminal to ask for the PIN on: use --pin-fd")?,
        };
        self.cache.borrow_mut().insert(token.to_string(), pin.clone());
        Ok(pin)
    }
}

/// Lines read from a file descriptor (all of it, the first time one is needed), or asked on the
/// terminal.
struct Lines {
    fd: Option<u32>,
    read: RefCell<Option<VecDeque<Zeroizing<String>>>>,
}

impl Lines {
    fn new(fd: Option<u32>) -> Lines {
        Lines { fd, read: RefCell::new(None) }
    }

    fn next(&self, what: &str) -> Result<Zeroizing<String>> {
        let fd = self.fd.context("no file descriptor")?;
        let mut read = self.read.borrow_mut();
        if read.is_none() {
            *read = Some(read_fd_lines(fd, what)?.into());
        }
        read.as_mut()
            .and_then(VecDeque::pop_front)
            .with_context(|| format!("file descriptor {fd} has no more lines for the {what}"))
    }

    /// An answer: the next line from the descriptor, or a line typed on the terminal.
    fn ask(&self, question: &str) -> Result<String> {
        eprint!("{question}");
        if self.fd.is_some() {
            let answer = self.next("answers")?.to_string();
            eprintln!("{answer}");
            return Ok(answer);
        }
        let tty = std::fs::File::open("/dev/tty").context("no terminal to ask on: use --confirm-fd")?;
        let mut answer = String::new();
        std::io::BufReader::new(tty).read_line(&mut answer)?;
        Ok(answer)
    }
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

fn read_secret(args: &SplitArgs) -> Result<Zeroizing<String>> {
    if let Some(fd) = args.secret_fd {
        let secret = Lines::new(Some(fd)).next("secret")?;
        if secret.is_empty() {
            bail!("the secret read from file descriptor {fd} is empty");
        }
        return Ok(secret);
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("secret to split: ").context("no terminal: use --secret-fd")?,
    );
    let again = Zeroizing::new(rpassword::prompt_password("the same secret again: ")?);
    if first != again {
        bail!("the two entries differ");
    }
    Ok(first)
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
    println!("{}", ceremony_os_render::digest("  head", &computed));
    Ok(())
}
