//! `material`, `burn` and `checksum`: the commands that make and check physical discs.

use crate::{DefinitionArg, SourceArgs, progress};
use anyhow::{Result, bail};
use ceremony_os_definition::Timestamp;
use ceremony_os_media::burn;
use ceremony_os_runner::Runner;
use ceremony_os_store::Store;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct MaterialArgs {
    /// The folder to put on the disc.
    dir: PathBuf,
    /// Where to write the ISO.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Volume label (ISO 9660: up to 32 of A-Z, 0-9, _).
    #[arg(long, default_value = "MATERIAL")]
    label: String,
    /// Date for every timestamp on the disc (UTC, like 2026-07-12T00:00:00Z).
    #[arg(long, value_parser = parse_date)]
    date: Option<Timestamp>,
    /// The image definition whose locked toolchain (xorriso) writes the disc.
    #[arg(long, default_value = "image/ceremony.toml", value_name = "FILE")]
    definition: PathBuf,
    #[command(flatten)]
    sources: SourceArgs,
    /// Print a JSON report on standard output.
    #[arg(long)]
    json: bool,
}

fn parse_date(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339_utc(text)
}

#[derive(Args, Debug)]
pub struct BurnArgs {
    /// The ISO to burn.
    iso: PathBuf,
    /// The drive (/dev/sr0), USB stick (/dev/sdX) or image file to write.
    #[arg(long, value_name = "DEV")]
    device: PathBuf,
    /// The ISO's expected SHA-256: 64 hex digits, or a SHA256SUMS file naming the ISO.
    #[arg(long, value_name = "HEX|FILE")]
    expect: String,
    /// Show what would be done; touch nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not write: only read the device back and compare.
    #[arg(long)]
    verify_only: bool,
    /// How to write: xorriso (optical default), cdrecord, wodim, or direct (stick/file default).
    #[arg(long, value_parser = ["xorriso", "cdrecord", "wodim", "direct"])]
    tool: Option<String>,
    /// Write even though file systems on the target's disk are mounted. Never overrides the
    /// system's own disk or a digest mismatch.
    #[arg(long)]
    force: bool,
    /// Print a JSON report on standard output.
    #[arg(long)]
    json: bool,
    /// Burn only what enough witnesses attest (see `attestations check`): who counts is
    /// --trust and --require, or --policy; checked before the device is opened.
    #[command(flatten)]
    witnesses: crate::attest::WitnessArgs,
    /// With --trust or --policy: the witnesses' attestation files.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    attestations: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ChecksumArgs {
    /// File or device.
    path: PathBuf,
    /// Hash only the first N bytes (the ISO's size, when reading back a burned disc).
    #[arg(long, value_name = "N")]
    size: Option<u64>,
    /// Print JSON on standard output.
    #[arg(long)]
    json: bool,
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

pub fn material(args: &MaterialArgs, store_root: &Path) -> Result<()> {
    let project = DefinitionArg { definition: args.definition.clone(), lockfile: None }.load()?;
    let environment = std::env::var("SOURCE_DATE_EPOCH").ok();
    let (epoch, source) =
        ceremony_os_workflow::material_epoch(args.date.map(|d| d.unix()), environment.as_deref(), &project)?;
    let store = Store::open(store_root)?;
    let observer = progress::FetchProgress::new();
    let job = ceremony_os_media::material::MaterialRequest {
        dir: &args.dir,
        output: &args.output,
        label: &args.label,
        epoch,
    };
    let report = ceremony_os_workflow::make_material(
        &store,
        &project,
        &job,
        &args.sources.config(),
        &observer,
        &progress::BuildProgress::new(),
    );
    observer.finish();
    let report = report?;
    eprintln!(
        "wrote {} ({} bytes, {} files, label {}, dates from {source}: {})",
        args.output.display(),
        report.size,
        report.files.len(),
        report.label,
        Timestamp::from_unix(epoch)
    );
    eprintln!("{}", ceremony_os_render::digest("material disc", &report.sha256));
    if args.json {
        print_json(&serde_json::json!({
            "iso": args.output, "sha256": report.sha256, "size": report.size, "label": report.label,
            "source_date_epoch": epoch,
            "words": ceremony_os_pgpwords::encode_hex(&report.sha256),
            "files": report.files.iter().map(|f| serde_json::json!({"path": f.path, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>(),
        }))?;
    }
    Ok(())
}

pub fn burn(args: &BurnArgs) -> Result<()> {
    let expected = burn::expected_digest(&args.expect, &args.iso)?;
    let tool = args.tool.as_deref().and_then(burn::Tool::parse);
    let options = burn::PlanOptions { tool, writes: !args.verify_only, force: args.force };
    let plan = burn::plan(&args.iso, &args.device, &expected, options)?;
    eprintln!(
        "{}",
        ceremony_os_render::digest(
            &format!("ISO {} ({} bytes) matches --expect", plan.iso.display(), plan.iso_size),
            &plan.iso_sha256
        )
    );
    if args.witnesses.given() {
        if args.attestations.is_empty() {
            bail!("--attestations: the witnesses' attestation files are needed with --trust or --policy");
        }
        let trust =
            crate::attest::TrustArgs { witnesses: args.witnesses.clone(), commit: None, lock_sha256: None };
        if !crate::attest::witnessed(&trust, &plan.iso_sha256, &args.attestations)?.passed {
            bail!("too few witnesses attest this ISO; nothing was written");
        }
    } else if !args.attestations.is_empty() {
        bail!("--attestations needs --trust and --require, or --policy: who counts as a witness");
    }
    if args.dry_run {
        if !args.verify_only {
            eprintln!("would run: {}", plan.describe_write());
        }
        eprintln!("would read back {} bytes of {} and compare SHA-256", plan.iso_size, plan.device.display());
        return Ok(());
    }
    if !args.verify_only {
        eprintln!("writing: {}", plan.describe_write());
        burn::write(&plan, &Runner::new(0), &mut |line| eprintln!("  {line}"))?;
    }
    let back = burn::read_back(&plan)?;
    eprintln!(
        "{}",
        ceremony_os_render::digest(
            &format!("read back {} bytes of {}", back.bytes_read, plan.device.display()),
            &back.sha256
        )
    );
    let matches = back.sha256 == plan.iso_sha256 && back.bytes_read == plan.iso_size;
    if args.json {
        print_json(&serde_json::json!({
            "iso": plan.iso, "device": plan.device, "expected": plan.iso_sha256, "read_back": back.sha256,
            "bytes_read": back.bytes_read, "iso_size": plan.iso_size, "written": !args.verify_only, "match": matches,
        }))?;
    }
    if !matches {
        if back.bytes_read < plan.iso_size {
            bail!(
                "MISMATCH: read back only {} of {} bytes from {}",
                back.bytes_read,
                plan.iso_size,
                plan.device.display()
            );
        }
        bail!(
            "MISMATCH: {} reads back as {}, the ISO is {}",
            plan.device.display(),
            back.sha256,
            plan.iso_sha256
        );
    }
    eprintln!("MATCH: {} holds the ISO", plan.device.display());
    Ok(())
}

pub fn checksum(args: &ChecksumArgs) -> Result<()> {
    let (sha256, n) = ceremony_os_media::sha256_prefix(&args.path, args.size)?;
    if let Some(size) = args.size
        && n < size
    {
        bail!("{} has only {n} bytes, fewer than --size {size}", args.path.display());
    }
    if args.json {
        print_json(&serde_json::json!({
            "path": args.path, "bytes": n, "sha256": sha256, "words": ceremony_os_pgpwords::encode_hex(&sha256),
        }))?;
    } else {
        writeln!(
            std::io::stdout(),
            "{}",
            ceremony_os_render::digest(&format!("{} ({n} bytes)", args.path.display()), &sha256)
        )?;
    }
    Ok(())
}
