//! Progress for long work: a bar on a terminal, one plain line per file otherwise; and the
//! fetch summary and JSON report.

use ceremony_os_store::locked::InputsReport;
use ceremony_os_store::{FetchItem, FetchObserver, Origin, Store};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

#[derive(Debug)]
pub struct FetchProgress {
    bar: Option<ProgressBar>,
}

impl FetchProgress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        FetchProgress { bar }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl FetchObserver for FetchProgress {
    fn begin(&self, items: usize, bytes: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(0);
                bar.set_length(bytes);
                bar.set_message(format!("fetching {items} files"));
            }
            None => eprintln!("fetching {items} files ({bytes} bytes)"),
        }
    }

    fn bytes(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn finished(&self, item: &FetchItem, origin: &Origin) {
        if self.bar.is_none() && *origin != Origin::Store {
            eprintln!("fetched {} from {origin}", item.label);
        }
    }

    fn warning(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}

/// Every file fetched for `report`, each once, in the order fetched.
fn outcomes(report: &InputsReport) -> Vec<&(FetchItem, Origin)> {
    let mut seen = std::collections::BTreeSet::new();
    report
        .state
        .fetched
        .iter()
        .chain(std::iter::once(&report.packages))
        .flat_map(|r| &r.outcomes)
        .filter(|(item, _)| seen.insert(item.expected.sha256.clone()))
        .collect()
}

/// Where the inputs came from: counts per kind of source, each archive re-vouched and by what,
/// and the bundle index used.
pub fn inputs_summary(report: &InputsReport, store: &Store) -> String {
    let all = outcomes(report);
    let count = |f: &dyn Fn(&Origin) -> bool| all.iter().filter(|(_, o)| f(o)).count();
    let mut out = format!(
        "{} files verified in {}: {} downloaded, {} already there, {} from a bundle",
        all.len(),
        store.root().display(),
        count(&|o| matches!(o, Origin::Mirror(_))),
        count(&|o| matches!(o, Origin::Store)),
        count(&|o| matches!(o, Origin::Bundle(_))),
    );
    for archive in report.state.archives.iter().filter(|a| !a.revouched_by.is_empty()) {
        out.push_str(&format!(
            "\n{} re-vouched: its locked state (Release of {}) is served by no source;",
            archive.suite, archive.locked_date
        ));
        for v in &archive.revouched_by {
            let what = match v.packages {
                0 => "no locked package comes from it; standing in: the Release of".to_string(),
                n => format!("{n} of its locked packages are listed, same SHA-256, by the Release of"),
            };
            out.push_str(&format!(
                "\n  {what} {} (InRelease sha256:{}, from {})",
                v.voucher.date, v.voucher.inrelease_sha256, v.source
            ));
        }
    }
    if let Some(digest) = report.bundle_index_used() {
        out.push_str(&format!("\nbundle index sha256:{digest}"));
    }
    out
}

/// `fetch --json`: every file with where it came from, the archives re-vouched, the bundles read.
pub fn inputs_json(store: &Store, report: &InputsReport) -> serde_json::Value {
    let items: Vec<serde_json::Value> = outcomes(report)
        .iter()
        .map(|(item, origin)| {
            let (kind, source) = match origin {
                Origin::Store => ("store", None),
                Origin::Mirror(m) => ("mirror", Some(m.clone())),
                Origin::Bundle(b) => ("bundle", Some(b.to_string())),
            };
            serde_json::json!({
                "label": item.label,
                "path": item.path,
                "sha256": item.expected.sha256.as_hex(),
                "size": item.expected.size,
                "origin": kind,
                "source": source,
                "store_path": store.object_path(&item.expected.sha256),
            })
        })
        .collect();
    let bundles: Vec<serde_json::Value> = report
        .state
        .bundle_indexes
        .iter()
        .map(|(bundle, digest, _)| serde_json::json!({"bundle": bundle.to_string(), "index_sha256": digest}))
        .collect();
    let warnings: Vec<&String> = report
        .state
        .warnings
        .iter()
        .chain(report.state.fetched.iter().chain([&report.packages]).flat_map(|r| &r.warnings))
        .collect();
    serde_json::json!({
        "store": store.root(),
        "files": items,
        "archives": report.state.archives,
        "bundles": bundles,
        "bundle_index_used": report.bundle_index_used(),
        "warnings": warnings,
    })
}

/// Stage lines: name, cached or built, duration, output digest; progress lines under them.
#[derive(Debug)]
pub struct BuildProgress {
    started: std::time::Instant,
}

impl BuildProgress {
    pub fn new() -> Self {
        BuildProgress { started: std::time::Instant::now() }
    }
}

impl ceremony_os_builder::BuildObserver for BuildProgress {
    fn stage_started(&self, name: &'static str) {
        eprintln!("==> {name}: building");
    }

    fn stage_finished(&self, r: &ceremony_os_builder::StageRecord) {
        let how = if r.cached { "cached" } else { "built" };
        eprintln!("==> {:<10} {how:<6} {:>7.1}s  sha256:{}", r.name, r.seconds, &r.digest);
    }

    fn progress(&self, stage: &'static str, message: &str) {
        eprintln!("    {stage}: {message}  [{:.0}s]", self.started.elapsed().as_secs_f64());
    }
}

pub fn build_summary(report: &ceremony_os_builder::BuildReport) -> String {
    let mut out = format!(
        "built {} ({} bytes)
  sha256 {}
  rootfs NAR {}
  manifest {}
  source {}",
        report.iso.display(),
        report.iso_size,
        report.iso_sha256,
        report.nar_hash,
        report.manifest.display(),
        report.source.described()
    );
    if !report.source.lock_in_commit {
        out.push_str(
            "\nNOTE: the lock built is not the one in that commit: a witness rebuilds from the ceremony.lock published beside the ISO (the manifest records this)",
        );
    }
    out
}

/// After a build that fell back to today's lock: what it is and where the changes are.
pub fn fallback_summary(
    fallback: &ceremony_os_workflow::Fallback,
    committed: &ceremony_os_workflow::Project,
) -> String {
    let mut out = format!(
        "NOTE: this ISO is not the one {} describes (its inputs can no longer be had); it was built from {}.\n{} package changes (also in {}):",
        committed.lock_path.display(),
        fallback.lock_file.display(),
        fallback.changes.len(),
        fallback.changes_file.display()
    );
    for change in &fallback.changes {
        out.push_str(&format!("\n  {change}"));
    }
    out.push_str(&format!(
        "\nwhy the committed lock could not be built:\n  {}",
        fallback.reason.replace('\n', "\n  ")
    ));
    out
}
