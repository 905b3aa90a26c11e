//! `verify` (rebuild and compare with what was published) and `compare` (two ISOs, no rebuild).

use crate::{DefinitionArg, SourceArgs};
use anyhow::{Context, Result};
use ceremony_os_store::Store;
use ceremony_os_verify::{compare as cmp, expect};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    definition: DefinitionArg,
    /// What was published: a SHA-256, SHA256SUMS, the ISO, <name>.manifest.json or
    /// <name>.provenance.json.
    #[arg(long, value_name = "X")]
    expect: String,
    #[command(flatten)]
    sources: SourceArgs,
    /// Keep the rebuilt outputs in DIR (by default they are discarded).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Directory for the rebuild's temporary state [default: the store's tmp/].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Print the verdict as JSON on standard output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    attest: crate::attest::AttestArgs,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    a: PathBuf,
    b: PathBuf,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Run diffoscope on differing ISO files and structure regions (at most 20) and save its
    /// reports in DIR.
    #[arg(long, value_name = "DIR")]
    diffoscope: Option<PathBuf>,
    /// Stop (exit status 2) rather than read, hash or decompress more than this many bytes in
    /// all: a crafted image cannot keep compare busy for days.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 30)]
    max_bytes: u64,
}

const MAX_LISTED: usize = 50;

pub fn verify(args: &VerifyArgs, store_root: &Path) -> Result<ExitCode> {
    let project = args.definition.load()?;
    let def = &project.def;
    let iso_name = format!("{}.iso", def.artifact_stem());
    let expected = expect::load(&args.expect, &iso_name)?;
    let attester = args.attest.attester(&def.debian.snapshot.to_string())?;
    eprintln!("expecting {} from {} ({})", expected.sha256, expected.source, expected.kind);
    expected.check_lock(&project.lock_path, &project.lock_sha256)?;

    let store = Store::open(store_root)?;
    let scratch = tempfile::Builder::new().prefix("ceremony-os-verify-").tempdir()?;
    let out_dir = args.keep.clone().unwrap_or_else(|| scratch.path().join("out"));
    // verify never falls back to another lock: what was published is checked, or nothing is.
    let observer = crate::progress::FetchProgress::new();
    let prepared = ceremony_os_workflow::prepare_build(
        &store,
        &project,
        &out_dir,
        &args.sources.config(),
        &observer,
        false,
        &mut |line| eprintln!("{line}"),
    );
    observer.finish();
    let prepared = prepared?;
    eprintln!("{}", crate::progress::inputs_summary(&prepared.inputs, &store));
    eprintln!("rebuilding from {} with no cached stage", project.lock_path.display());
    let request = ceremony_os_verify::rebuild::VerifyRequest {
        build: prepared.request(&store, &out_dir, true, args.work_dir.clone()),
        expected: &expected,
    };
    let verdict =
        ceremony_os_verify::rebuild::verify(&request, &crate::progress::BuildProgress::new(), &mut |m| {
            eprintln!("  {m}")
        })?;
    eprintln!("{}", ceremony_os_render::digest("expected", &expected.sha256));
    eprintln!("{}", ceremony_os_render::digest("rebuilt", &verdict.rebuilt.iso_sha256));
    if !verdict.matched {
        print_mismatch(&verdict, &expected);
    }
    eprintln!("{}", if verdict.matched { "MATCH" } else { "MISMATCH" });
    if let Some(attester) = &attester {
        // The lock's digest as the rebuild read it.
        attester.write(&iso_name, &expected.sha256, &request.build.lock_sha256(), verdict.matched)?;
    }
    if args.json {
        let json = serde_json::json!({
            "match": verdict.matched,
            "expected": {"source": expected.source, "kind": expected.kind, "sha256": expected.sha256,
                         "words": ceremony_os_pgpwords::encode_hex(&expected.sha256)},
            "rebuilt": {"sha256": verdict.rebuilt.iso_sha256, "words": ceremony_os_pgpwords::encode_hex(&verdict.rebuilt.iso_sha256),
                        "stages": verdict.rebuilt.stages},
            "first_differing_stage": verdict.first_differing_stage,
            "rootfs_differences": verdict.rootfs_differences,
            "iso_comparison": verdict.iso_comparison,
        });
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&json)?)?;
    }
    Ok(if verdict.matched { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_mismatch(verdict: &ceremony_os_verify::rebuild::Verdict, expected: &expect::Expected) {
    if let Some(stage) = &verdict.first_differing_stage {
        eprintln!(
            "first stage that differs: {}\n  expected {}\n  rebuilt  {}",
            stage.stage, stage.expected, stage.rebuilt
        );
        if stage.input_differences.is_empty() {
            eprintln!("  its inputs are the same: the stage gave other bytes from the same inputs");
        } else {
            eprintln!("  its inputs differ:");
            for d in stage.input_differences.iter().take(MAX_LISTED) {
                eprintln!("    {}\n      expected {}\n      rebuilt  {}", d.path, d.expected, d.rebuilt);
            }
        }
    }
    if expected.rootfs.is_some() {
        eprintln!("root file system paths that differ: {}", verdict.rootfs_differences.len());
        for change in verdict.rootfs_differences.iter().take(MAX_LISTED) {
            eprintln!("  {:<10} {}", change.kind, change.path);
        }
    }
    if let Some(comparison) = &verdict.iso_comparison {
        eprintln!("{}", comparison.render());
    }
    if expected.stages.is_empty() && expected.rootfs.is_none() && expected.iso.is_none() {
        eprintln!(
            "(give --expect the published manifest.json, provenance or ISO to learn where they differ)"
        );
    }
}

pub fn compare(args: &CompareArgs) -> Result<ExitCode> {
    let limits = ceremony_os_verify::limits::Limits {
        max_total_bytes: args.max_bytes,
        ..ceremony_os_verify::limits::Limits::default()
    };
    let report = cmp::compare(&args.a, &args.b, &limits, &mut |m| eprintln!("{m}"))?;
    if let Some(dir) = &args.diffoscope {
        run_diffoscope(&report, dir)?;
    }
    if args.json {
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(std::io::stdout(), "{}", report.render())?;
    }
    Ok(if report.identical { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// diffoscope on each differing ISO file or structure region (at most 20), from copies of both
/// sides written under generated names: nothing named by the images is used as a path.
fn run_diffoscope(report: &cmp::Report, dir: &Path) -> Result<()> {
    if report.identical {
        return Ok(());
    }
    let runner = ceremony_os_runner::Runner::new(0);
    if runner.cmd("diffoscope", "/").arg("--version").output().is_err() {
        anyhow::bail!("--diffoscope needs diffoscope: apt-get install diffoscope-minimal (or diffoscope)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let work = tempfile::Builder::new().prefix("ceremony-os-diffoscope-").tempdir()?;
    let mut written = 0;
    for layer in &report.layers {
        for difference in layer.differences.iter().filter(|d| d.kind == "content" && !d.expanded) {
            if written >= 20 {
                return Ok(());
            }
            let (Some(a), Some(b)) = (
                cmp::member_bytes(report, layer, &difference.path, true)?,
                cmp::member_bytes(report, layer, &difference.path, false)?,
            ) else {
                continue;
            };
            let (file_a, file_b) =
                (work.path().join(format!("{written}-a")), work.path().join(format!("{written}-b")));
            std::fs::write(&file_a, a)?;
            std::fs::write(&file_b, b)?;
            let name: String = format!("{}{}", layer.name, difference.path)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
                .take(150)
                .collect();
            let out = dir.join(format!("{written:02}-{name}.txt"));
            // diffoscope exits 1 when it finds differences: that is the point here, not a failure.
            let result =
                runner.cmd("diffoscope", "/").arg("--text").arg(&out).arg(&file_a).arg(&file_b).output();
            if let Err(ceremony_os_runner::RunError::Failed { status, stderr_tail, .. }) = &result
                && status.code() != Some(1)
            {
                anyhow::bail!("diffoscope failed on {}: {status}\n{stderr_tail}", difference.path);
            }
            eprintln!("diffoscope report: {}", out.display());
            written += 1;
        }
    }
    Ok(())
}
