//! `verify` (rebuild and compare with what was published) and `compare` (two ISOs, no rebuild).

use crate::discs::show_digest;
use crate::{DefinitionArg, SourceArgs, inputs};
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
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    a: PathBuf,
    b: PathBuf,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Run diffoscope on differing files (at most 20) and save its reports in DIR.
    #[arg(long, value_name = "DIR")]
    diffoscope: Option<PathBuf>,
}

const MAX_LISTED: usize = 50;

pub fn verify(args: &VerifyArgs, store_root: &Path) -> Result<ExitCode> {
    let definition = &args.definition.definition;
    let lock_path = args.definition.lockfile();
    let (def, lock) = inputs::load(definition, &lock_path)?;
    let iso_name = format!("{}.iso", def.artifact_stem());
    let expected = expect::load(&args.expect, &iso_name)?;
    eprintln!("expecting {} from {} ({})", expected.sha256, expected.source, expected.kind);

    let store = Store::open(store_root)?;
    crate::fetch_all(&store, &def, &lock, &args.sources)?;
    let scratch = tempfile::Builder::new().prefix("ceremony-os-verify-").tempdir()?;
    let out_dir = args.keep.clone().unwrap_or_else(|| scratch.path().join("out"));
    eprintln!("rebuilding from {} with no cached stage", lock_path.display());
    let report = crate::build_image(
        &store,
        definition,
        &lock_path,
        (&def, &lock),
        &out_dir,
        true,
        args.work_dir.clone(),
    )?;

    let matched = report.iso_sha256 == expected.sha256;
    eprintln!("{}", show_digest("expected", &expected.sha256));
    eprintln!("{}", show_digest("rebuilt", &report.iso_sha256));
    let actual_stages: Vec<(String, String)> =
        report.stages.iter().map(|s| (s.name.to_string(), s.digest.clone())).collect();
    let first_stage = expect::first_differing_stage(&expected.stages, &actual_stages);
    let mut paths = Vec::new();
    let mut layers = None;
    if !matched {
        if let Some((stage, want, got)) = &first_stage {
            eprintln!("first stage that differs: {stage}\n  expected {want}\n  rebuilt  {got}");
        }
        if let Some(published) = &expected.rootfs {
            let rebuilt = ceremony_os_tree::TreeManifest::parse(
                &std::fs::read_to_string(&report.rootfs_manifest)
                    .context("reading the rebuilt rootfs manifest")?,
            )?;
            paths = ceremony_os_tree::diff(published, &rebuilt);
            eprintln!("root file system paths that differ: {}", paths.len());
            for change in paths.iter().take(MAX_LISTED) {
                eprintln!("  {:<10} {}", change_kind(change), change.path());
            }
        }
        if let Some(published_iso) = &expected.iso {
            let work = scratch.path().join("compare");
            let comparison = cmp::compare(published_iso, &report.iso, &work, &mut |m| eprintln!("  {m}"))?;
            eprintln!("{}", comparison.render());
            layers = Some(comparison);
        }
        if expected.stages.is_empty() && expected.rootfs.is_none() && expected.iso.is_none() {
            eprintln!(
                "(give --expect the published manifest.json, provenance or ISO to learn where they differ)"
            );
        }
    }
    eprintln!("{}", if matched { "MATCH" } else { "MISMATCH" });
    if args.json {
        let json = serde_json::json!({
            "match": matched,
            "expected": {"source": expected.source, "kind": expected.kind, "sha256": expected.sha256,
                         "words": ceremony_os_pgpwords::encode_hex(&expected.sha256)},
            "rebuilt": {"sha256": report.iso_sha256, "words": ceremony_os_pgpwords::encode_hex(&report.iso_sha256),
                        "stages": report.stages},
            "first_differing_stage": first_stage.map(|(s, want, got)| serde_json::json!({"stage": s, "expected": want, "rebuilt": got})),
            "rootfs_differences": paths.iter().map(|c| serde_json::json!({"path": c.path(), "kind": change_kind(c)})).collect::<Vec<_>>(),
            "iso_comparison": layers,
        });
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&json)?)?;
    }
    Ok(if matched { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn change_kind(change: &ceremony_os_tree::Change) -> String {
    match change {
        ceremony_os_tree::Change::Added(_) => "added".into(),
        ceremony_os_tree::Change::Removed(_) => "removed".into(),
        ceremony_os_tree::Change::Content { .. } => "content".into(),
        ceremony_os_tree::Change::Metadata { fields, .. } => format!("metadata ({})", fields.join(", ")),
    }
}

pub fn compare(args: &CompareArgs) -> Result<ExitCode> {
    let work = tempfile::Builder::new().prefix("ceremony-os-compare-").tempdir()?;
    let report = cmp::compare(&args.a, &args.b, work.path(), &mut |m| eprintln!("{m}"))?;
    if let Some(dir) = &args.diffoscope {
        run_diffoscope(&report, work.path(), dir)?;
    }
    if args.json {
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(std::io::stdout(), "{}", report.render())?;
    }
    Ok(if report.identical { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run_diffoscope(report: &cmp::Report, work: &Path, dir: &Path) -> Result<()> {
    if report.identical {
        return Ok(());
    }
    let runner = ceremony_os_runner::Runner::new(0);
    if runner.cmd("diffoscope", "/").arg("--version").output().is_err() {
        anyhow::bail!("--diffoscope needs diffoscope: apt-get install diffoscope-minimal (or diffoscope)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    for (layer, difference) in report.leaf_differences() {
        if difference.kind != "content" || written >= 20 {
            continue;
        }
        let Some((a, b)) = cmp::member_files(work, layer, &difference.path) else { continue };
        let name: String = format!("{layer}{}", difference.path)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .collect();
        let out = dir.join(format!("{name}.txt"));
        // diffoscope exits 1 when it finds differences: that is the point here, not a failure.
        let result = runner.cmd("diffoscope", "/").arg("--text").arg(&out).arg(&a).arg(&b).output();
        if let Err(ceremony_os_runner::RunError::Failed { status, stderr_tail, .. }) = &result
            && status.code() != Some(1)
        {
            anyhow::bail!("diffoscope failed on {}: {status}\n{stderr_tail}", difference.path);
        }
        eprintln!("diffoscope report: {}", out.display());
        written += 1;
    }
    Ok(())
}
